"""Rows built to break what a migration adds (``rehearse --adversarial``).

Seeded rows are valid and varied; whether they break a migration is chance. The adversary
reads the migration's database operations and, for each constraint one adds on a table
that has rows, writes the rows that break it, through the models of the state before the
migration (which do not have the constraint yet):

* uniqueness (``unique=True``, ``unique_together``, a ``UniqueConstraint`` on fields): a
  row that repeats an existing row's values in those columns;
* NOT NULL: a row with NULL in the column;
* CHECK (``CheckConstraint``): values the condition rejects, found by asking the database
  to evaluate the condition (``Q.check``) over a few candidates per field;
* a narrower column (``max_length``, a smaller or unsigned integer): a value that fits the
  old column and not the new one;
* a foreign key whose constraint comes back (``db_constraint`` False to True): a row that
  points at no row; a new foreign key with a constant default: the default's target row is
  removed;
* a data step (``RunPython``, ``RunSQL``) next to unique text columns of its app: values
  that differ only in case, which collide once a step lower- or upper-cases them.

``Attack.values`` of the constraint kinds are also what old code writes after the migration:
the release still serving does not know the constraint.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import migrations, models, transaction
from django.db.migrations.migration import Migration
from django.db.migrations.state import ProjectState

from django_rollout.db.seed import new_row
from django_rollout.errors import first_line
from django_rollout.rules.data._schema import walk_operations

CASE_VARIANTS = ("Rollout.Case@Example.com", "rollout.case@example.com", "ROLLOUT.CASE@EXAMPLE.COM")
_INTEGER_LIMITS = (
    (models.SmallIntegerField, 2**15 - 1),
    (models.IntegerField, 2**31 - 1),
    (models.BigIntegerField, 2**63 - 1),
)


@dataclass(frozen=True)
class Attack:
    """Rows that break one constraint of one table.

    Each entry of ``values`` is one row: the columns (attnames) it sets over a valid new row.
    ``repeat`` names columns copied from an existing row (a duplicate); ``remove`` is the
    filter of rows to delete; ``old_writes`` says whether old code writes these rows too.
    """

    app_label: str
    model: str
    why: str
    values: tuple[dict[str, Any], ...] = ({},)
    repeat: tuple[str, ...] = ()
    remove: dict[str, Any] | None = None
    old_writes: bool = True
    check: Any = None  # a CheckConstraint: its rows are found by asking the database


@dataclass
class Planted:
    """What the adversary wrote before a step: rows per reason, and what the model refused.

    ``made`` and ``removed`` let ``withdraw`` undo it after the step, so that the next
    migration starts from ordinary rows."""

    rows: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    made: list[tuple[str, str, Any]] = field(default_factory=list)
    removed: list[models.Model] = field(default_factory=list)


def attacks(migration: Migration, state: ProjectState) -> list[Attack]:
    """Return the attacks on what ``migration`` adds, judged against ``state`` (before it)."""
    found: dict[tuple[str, str, str], Attack] = {}
    for operation in walk_operations(migration.operations):
        for attack in _attacks(migration.app_label, operation, state):
            # Two data steps in one migration ask for the same rows once.
            found.setdefault((attack.app_label, attack.model, attack.why), attack)
    return list(found.values())


def _attacks(app_label: str, op: Any, state: ProjectState) -> Iterator[Attack]:
    if isinstance(op, migrations.RunPython | migrations.RunSQL):
        yield from _case_variants(app_label, state)
        return
    name = getattr(op, "model_name", None) or getattr(op, "name", None)
    model = state.models.get((app_label, str(name).lower())) if name else None
    if model is None:
        return  # a table created by this migration has no rows to break
    key = (app_label, model.name_lower)
    if isinstance(op, migrations.AddConstraint):
        constraint = op.constraint
        if isinstance(constraint, models.UniqueConstraint):
            if constraint.fields and not constraint.expressions and constraint.condition is None:
                yield _repeat(key, constraint.fields, model, f"`{constraint.name}`")
        elif isinstance(constraint, models.CheckConstraint):
            yield Attack(*key, f"a row that check `{constraint.name}` rejects", check=constraint)
    elif isinstance(op, migrations.AlterUniqueTogether):
        before = {tuple(t) for t in model.options.get("unique_together") or ()}
        for together in op.option_value or ():
            if tuple(together) not in before:
                yield _repeat(key, together, model, f"unique_together {tuple(together)}")
    elif isinstance(op, migrations.AlterField) and op.name in model.fields:
        yield from _altered(key, model.fields[op.name], op.field, op.name)
    elif isinstance(op, migrations.AddField):
        default = op.field.default
        if op.field.is_relation and not callable(default) and default is not models.NOT_PROVIDED:
            target = _target_key(op.field, app_label)
            if target is not None:
                yield Attack(
                    *target,
                    f"the row {default!r} that `{op.name}`'s default points at is gone",
                    values=(),
                    remove={"pk": default},
                    old_writes=False,
                )


def _repeat(key: tuple[str, str], names: Sequence[str], model: Any, what: str) -> Attack:
    attnames = tuple(_attname(model.fields.get(n), n) for n in names)
    return Attack(*key, f"a row repeating another's {', '.join(names)} for {what}", repeat=attnames)


def _attname(f: Any, name: str) -> str:
    return f"{name}_id" if f is not None and f.is_relation and f.many_to_one else name


def _altered(key: tuple[str, str], old: Any, new: Any, name: str) -> Iterator[Attack]:
    if old.many_to_many or new.many_to_many:
        return  # its rows are in the through table: no value of this model's row breaks it
    attname = _attname(new, name)
    if new.unique and not old.unique and not new.primary_key:
        yield Attack(*key, f"a row repeating another's `{name}` for unique", repeat=(attname,))
    if old.null and not new.null:
        yield Attack(*key, f"NULL in `{name}`, now NOT NULL", values=({attname: None},))
    old_len, new_len = getattr(old, "max_length", None), getattr(new, "max_length", None)
    if (
        new_len
        and (old_len is None or old_len > new_len)
        and isinstance(old, models.CharField | models.TextField)
    ):
        yield Attack(
            *key, f"a `{name}` longer than {new_len}", values=({attname: "x" * (new_len + 1)},)
        )
    if isinstance(old, models.IntegerField) and isinstance(new, models.IntegerField):
        old_max, new_max = _integer_max(old), _integer_max(new)
        if new_max < old_max:
            yield Attack(*key, f"a `{name}` beyond {new_max}", values=({attname: new_max + 1},))
        if _unsigned(new) and not _unsigned(old):
            yield Attack(*key, f"a negative `{name}`", values=({attname: -1},))
    if old.is_relation and new.is_relation and not old.db_constraint and new.db_constraint:
        yield Attack(
            *key,
            f"a `{name}` that points at no row",
            values=({attname: "?dangling"},),
            old_writes=False,
        )


def _integer_max(f: Any) -> int:
    for kind, limit in _INTEGER_LIMITS:
        if isinstance(f, kind):
            return limit
    return 2**31 - 1


def _unsigned(f: Any) -> bool:
    return isinstance(
        f,
        models.PositiveIntegerField
        | models.PositiveSmallIntegerField
        | models.PositiveBigIntegerField,
    )


def _target_key(f: Any, app_label: str) -> tuple[str, str] | None:
    to = f.remote_field.model
    if not isinstance(to, str):
        return (to._meta.app_label, to._meta.model_name)
    if to == "self":
        return None
    label, _, name = to.rpartition(".")
    return (label or app_label, name.lower())


def _case_variants(app_label: str, state: ProjectState) -> Iterator[Attack]:
    for model in state.models.values():
        if model.app_label != app_label or not model.options.get("managed", True):
            continue
        for name, f in model.fields.items():
            if (
                f.unique
                and not f.primary_key
                and isinstance(f, models.CharField | models.TextField)
            ):
                limit = getattr(f, "max_length", None) or 255
                rows = tuple({name: v[:limit]} for v in CASE_VARIANTS)
                yield Attack(
                    app_label,
                    model.name_lower,
                    f"`{name}` values that differ only in case, for the data step",
                    values=rows,
                    old_writes=False,
                )


def plant(found: Sequence[Attack], apps: Any, alias: str, n: int) -> Planted:
    """Write the rows of ``found`` through the models of ``apps`` (the state before the step).

    Each row is written in a savepoint: a row the old schema refuses is reported in
    ``Planted.refused``, not raised."""
    result = Planted()
    for attack in found:
        try:
            model = apps.get_model(attack.app_label, attack.model)
        except LookupError:
            continue
        manager = model._base_manager.db_manager(alias)
        try:
            with transaction.atomic(using=alias):
                if attack.remove is not None:
                    gone = list(manager.filter(**attack.remove))
                    made = manager.filter(**attack.remove).delete()[0]
                    result.removed.extend(gone)
                else:
                    rows = rows_for(attack, model, alias, n)
                    for row in rows:
                        insert(row, alias)
                    made = len(rows)
                    result.made.extend((attack.app_label, attack.model, r.pk) for r in rows)
        except Exception as exc:  # the old schema (or a PROTECT) refuses: say so, go on
            result.refused[attack.why] = first_line(exc)
            continue
        n += 10
        if made:
            result.rows[attack.why] = made
    return result


def withdraw(planted: Planted, apps: Any, alias: str) -> None:
    """Delete the rows ``plant`` wrote and put back those it removed, as far as the state
    after the step (``apps``) still has their tables; what cannot be undone stays."""
    for app_label, name, pk in planted.made:
        try:
            model = apps.get_model(app_label, name)
            with transaction.atomic(using=alias):
                model._base_manager.db_manager(alias).filter(pk=pk).delete()
        except Exception:  # renamed, dropped, or protected by now: leave it
            continue
    for row in planted.removed:
        try:
            with transaction.atomic(using=alias):
                row.save(using=alias, force_insert=True)
        except Exception:  # its table changed under it: the next top-up refills
            continue


def rows_for(attack: Attack, model: type[models.Model], alias: str, n: int) -> list[models.Model]:
    """The unsaved rows of ``attack`` for ``model`` (old code's models, or the seeder's)."""
    manager = model._base_manager.db_manager(alias)
    overlays: Sequence[dict[str, Any]] = attack.values
    if attack.check is not None:
        overlays = _violations(attack.check, model, alias, n)
    out = []
    for i, overlay in enumerate(overlays):
        row = new_row(model, alias, n + i)
        if row is None:
            continue
        if attack.repeat:
            existing = manager.order_by("pk").values(*attack.repeat).first()
            if existing is None:
                continue
            for attname, value in existing.items():
                setattr(row, attname, value)
        for attname, value in overlay.items():
            setattr(row, attname, _resolve(value, model, attname, alias))
        out.append(row)
    return out


def insert(row: models.Model, alias: str) -> None:
    """INSERT ``row`` in a savepoint, so that a refusal leaves the transaction usable."""
    with transaction.atomic(using=alias):
        row.save(using=alias, force_insert=True)


def _resolve(value: Any, model: type[models.Model], attname: str, alias: str) -> Any:
    if value != "?dangling":
        return value
    f = next(f for f in model._meta.concrete_fields if f.attname == attname)
    target = f.related_model._base_manager.db_manager(alias)  # type: ignore[union-attr]
    highest = target.order_by("-pk").values_list("pk", flat=True).first()
    return (highest or 0) + 1_000_000


# -- CHECK constraints: ask the database which candidate values the condition rejects ---------


def _violations(
    constraint: Any, model: type[models.Model], alias: str, n: int
) -> list[dict[str, Any]]:
    """One row's values that ``constraint`` rejects, or none when no candidate does."""
    base = new_row(model, alias, n)
    if base is None:
        return []
    names = sorted(_referenced(constraint.condition))
    fields = {f.name: f for f in model._meta.concrete_fields}
    if not names or any(n not in fields for n in names) or len(names) > 3:
        return []
    for combo in itertools.product(*(_candidates(fields[name]) for name in names)):
        for name, value in zip(names, combo, strict=True):
            setattr(base, fields[name].attname, value)
        against = base._get_field_expression_map(meta=model._meta)
        try:
            with transaction.atomic(using=alias):
                passes = models.Q(constraint.condition).check(against, using=alias)
        except Exception:
            continue
        if not passes:
            return [{fields[name].attname: value for name, value in zip(names, combo, strict=True)}]
    return []


def _referenced(condition: Any) -> set[str]:
    """Field names a Q condition compares (the part before the first ``__``)."""
    names: set[str] = set()
    for child in getattr(condition, "children", ()):
        if isinstance(child, tuple):
            names.add(child[0].split("__")[0])
        else:
            names |= _referenced(child)
    return names


def _candidates(f: Any) -> list[Any]:
    if isinstance(f, models.BooleanField):
        return [True, False]
    if isinstance(f, models.IntegerField | models.FloatField):
        return [-1, 0, 1, -1_000_000, 1_000_000]
    if isinstance(f, models.DecimalField):
        import decimal

        return [decimal.Decimal(-1), decimal.Decimal(0), decimal.Decimal(1)]
    if isinstance(f, models.CharField | models.TextField):
        limit = getattr(f, "max_length", None) or 10
        return ["", "x", "X" * limit]
    return []
