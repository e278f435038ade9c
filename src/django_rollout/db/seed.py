"""Synthetic rows made through historical models, so that a rehearsal has data to break.

``top_up(apps, alias, rows)`` brings every table of a migration state to ``rows`` rows. Rows
are built from the models of that state (what the old release sees), not from today's
models: every field gets a value of its type that varies with the row (so at least two rows
hold distinct values that are not the default), a nullable field holds NULL in every third
row, strings respect ``max_length``, ``choices`` are cycled, unique fields and unique sets
stay unique, and foreign keys point at rows of the target table, which is filled first.
A multi-table child is saved row by row (Django cannot bulk-create one): each row gets
parent rows of its own.
A required field of a type this module does not know is filled from its default; a model
it cannot fill is reported in ``SeedResult.skipped`` with the reason, never guessed.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections, models, transaction
from django.db.models.fields import NOT_PROVIDED

BATCH = 500
_EPOCH = datetime.datetime(2024, 1, 1, 12, 0, 0)


@dataclass
class SeedResult:
    """What ``top_up`` did: rows inserted per table, and the models it could not fill."""

    inserted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# Why a model of the state is neither seeded nor driven by traffic: a model moved to another
# app in state only (``SeparateDatabaseAndState``) stays in the old app's state, naming a
# table that a later migration renamed or dropped, until the old app lets go of it.
NO_TABLE = "no table in the database: the migration state keeps this model, the schema moved on"


class _Unfillable(Exception):
    """A required field whose value this module cannot make."""


def top_up(
    apps: Any,
    alias: str,
    rows: int | Mapping[str, int],
    tables: Collection[str] | None = None,
) -> SeedResult:
    """Insert rows into every concrete, managed table of ``apps`` until each holds ``rows``
    (a number per table name: a table it does not name gets none). Given the ``tables`` the
    database has, a model whose table is not among them is skipped and said so."""
    result = SeedResult()
    for model in in_dependency_order(_models(apps)):
        table = model._meta.db_table
        if tables is not None and table not in tables:
            result.skipped[table] = NO_TABLE
            continue
        wanted = rows if isinstance(rows, int) else rows.get(table, 0)
        try:
            # One model's rows all or none: a refused batch must not abort the others.
            with transaction.atomic(using=alias):
                inserted = _fill(model, alias, wanted)
        except _Unfillable as reason:
            result.skipped[table] = str(reason)
            continue
        except (DatabaseError, TypeError, ValueError, ValidationError) as exc:
            # A custom field or a database rule this module cannot satisfy: say which.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            result.skipped[table] = f"{type(exc).__name__}: {first}".rstrip(": ")
            continue
        if inserted:
            result.inserted[table] = inserted
    return result


@dataclass(frozen=True)
class Scaled:
    """Rows per table in proportion to production's, the largest table at most ``cap``."""

    rows: dict[str, int]
    scale: float  # seeded rows per production row
    largest: int  # production's largest table


def scaled_rows(counts: Mapping[str, int], cap: int) -> Scaled:
    """Scale production's row counts down so the largest table gets at most ``cap`` rows.

    Relative sizes are kept, so a table a thousand times bigger than another in production
    is so in the rehearsal, and a lock's measured time times ``1 / scale`` estimates
    production's. A table with rows keeps at least two (one row cannot collide with another),
    an empty one stays empty: a constraint added to it is safe in production too.
    """
    largest = max(counts.values(), default=0)
    scale = 1.0 if largest <= cap else cap / largest
    rows = {table: max(round(count * scale), min(count, 2)) for table, count in counts.items()}
    return Scaled(rows=rows, scale=scale, largest=largest)


def _models(apps: Any) -> list[type[models.Model]]:
    return [
        m
        for m in apps.get_models(include_auto_created=True)
        if m._meta.managed and not m._meta.proxy and not m._meta.swapped
    ]


def in_dependency_order(found: Sequence[type[models.Model]]) -> list[type[models.Model]]:
    """Targets of required foreign keys before the models that point at them."""
    by_label = {m._meta.label_lower: m for m in found}
    graph: dict[str, set[str]] = {}
    for model in found:
        needs = set()
        for f in _concrete(model):
            if f.is_relation and (f.many_to_one or f.one_to_one):
                target = f.related_model._meta.label_lower  # type: ignore[union-attr]
                if target != model._meta.label_lower and target in by_label:
                    needs.add(target)
        graph[model._meta.label_lower] = needs
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError:  # required FKs in a cycle: fill in any order, nullable ones as NULL
        order = sorted(graph)
    return [by_label[label] for label in order]


def _concrete(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not getattr(f, "generated", False)]


def _fill(model: type[models.Model], alias: str, rows: int) -> int:
    manager = model._base_manager.db_manager(alias)
    existing = manager.count()
    if existing >= rows:
        return 0
    fields = [f for f in _concrete(model) if not _automatic(f)]
    targets = {
        f.name: list(
            f.related_model._base_manager.db_manager(alias)  # type: ignore[union-attr]
            .order_by("pk")
            .values_list(f.target_field.attname, flat=True)[: max(rows, 1)]
        )
        for f in fields
        if f.is_relation
    }
    checks = _unique_tables(model, alias)
    unique_sets = [names for names, _ in checks]
    seen: list[set[tuple[Any, ...]]] = [set(rows.values_list(*names)) for names, rows in checks]
    parents = model._meta.get_parent_list()
    batch: list[models.Model] = []
    made = 0
    # Values are numbered from the rows already there (the parents' tables' too: a child's
    # rows are rows of them), so a later top-up keeps them unique.
    i = max([existing, *(p._base_manager.db_manager(alias).count() for p in parents)])
    attempts = 0
    relations = {f.name: k for k, f in enumerate(f for f in fields if f.is_relation)}
    adapt: dict[str, Callable[[Any], Any]] = {}
    connection = connections[alias]
    while existing + made < rows and attempts < 3 * rows:
        attempts += 1
        values = {
            f.attname: _value(f, i, targets.get(f.name), relations.get(f.name, 0)) for f in fields
        }
        for f in fields:
            value = values[f.attname]
            if value is None or value is NOT_PROVIDED or value is _SKIP or _builtin(f):
                continue
            if f.attname not in adapt:
                adapt[f.attname] = _adapter(f, value, connection)
            values[f.attname] = adapt[f.attname](value)
        i += 1
        if any(v is _SKIP for v in values.values()):
            continue
        # A field with only a database default is left to the database.
        values = {k: v for k, v in values.items() if v is not NOT_PROVIDED}
        keys = [tuple(_key_value(values, n) for n in names) for names in unique_sets]
        if any(k in s for k, s in zip(keys, seen, strict=True)):
            continue
        for k, s in zip(keys, seen, strict=True):
            s.add(k)
        batch.append(model(**values))
        made += 1
        if len(batch) >= BATCH:
            _insert(manager, batch, alias, inherited=bool(parents))
            batch = []
    if batch:
        _insert(manager, batch, alias, inherited=bool(parents))
    return made


def _as_is(value: Any) -> Any:
    return value


def _builtin(f: models.Field[Any, Any]) -> bool:
    """Django's own fields take the values this module makes for their types."""
    return type(f).__module__.startswith("django.")


def _accepted(f: models.Field[Any, Any], value: Any, connection: Any) -> Any:
    """``value``, or the form of it a custom field accepts (see ``_adapter``)."""
    if value is None or _builtin(f):
        return value
    try:
        return _adapter(f, value, connection)(value)
    except _Unfillable:
        return value  # the insert reports the field's refusal


def _adapter(f: models.Field[Any, Any], value: Any, connection: Any) -> Callable[[Any], Any]:
    """How to turn this module's values for ``f`` into ones the field accepts.

    A custom field may refuse a plain value of its column's type (a text field that stores
    a list and raises ``TypeError`` for a string): its own ``to_python`` turns the value
    into its Python type; failing that, its default, or NULL where it may be NULL.
    """

    def accepted(candidate: Any) -> bool:
        try:
            f.get_db_prep_save(candidate, connection=connection)
        except Exception:  # noqa: BLE001 - any refusal of a third-party field
            return False
        return True

    if accepted(value):
        return _as_is
    try:
        converted = f.to_python(value)
    except Exception:  # noqa: BLE001
        converted = _SKIP
    if converted is not _SKIP and accepted(converted):
        return lambda value: f.to_python(value)
    if f.has_default() and accepted(f.get_default()):
        return lambda _value: f.get_default()
    if f.null:
        return lambda _value: None
    raise _Unfillable(f"`{f.name}`: {type(f).__name__} refuses every synthetic value")


def _insert(manager: Any, batch: list[models.Model], alias: str, inherited: bool) -> None:
    if not inherited:
        manager.bulk_create(batch)
        return
    # Django cannot bulk-create a multi-table child: each save inserts its parent rows first.
    from django.db import transaction

    with transaction.atomic(using=alias):
        for row in batch:
            row.save(using=alias, force_insert=True)


def _automatic(f: models.Field[Any, Any]) -> bool:
    """A value the database or Django fills: an auto primary key, or the link of a
    multi-table child to its parent (saving the child inserts the parent row first)."""
    if isinstance(f, models.AutoField | models.BigAutoField | models.SmallAutoField):
        return True
    return bool(f.remote_field is not None and getattr(f.remote_field, "parent_link", False))


def _unique_tables(model: type[models.Model], alias: str) -> list[tuple[tuple[str, ...], Any]]:
    """Each unique set of ``model`` with the manager of the table that holds its columns: a
    parent's, for a set a multi-table child inherits."""
    checks = []
    for names in _unique_sets(model):
        owners = {model._meta.get_field(n).model for n in names}
        owner = owners.pop() if len(owners) == 1 else model
        checks.append((names, owner._base_manager.db_manager(alias)))
    return checks


def _unique_sets(model: type[models.Model]) -> list[tuple[str, ...]]:
    """Field names of each uniqueness of the model (unique fields, unique_together,
    UniqueConstraints over fields), by attname, the primary key left out when it is
    automatic. A conditional constraint counts as if it held for every row: rows made
    distinct over its fields never collide, whatever the condition says (wagtail's one
    workflow in progress per page)."""
    meta = model._meta
    sets: list[tuple[str, ...]] = []
    for f in _concrete(model):
        if f.unique and not _automatic(f):
            sets.append((f.attname,))
    for together in meta.unique_together:
        sets.append(tuple(meta.get_field(n).attname for n in together))
    for constraint in meta.constraints:
        if (
            isinstance(constraint, models.UniqueConstraint)
            and constraint.fields
            and not constraint.expressions
        ):
            sets.append(tuple(meta.get_field(n).attname for n in constraint.fields))
    return sets


def _key_value(values: dict[str, Any], attname: str) -> Any:
    value = values.get(attname)
    # NULLs never collide in a unique index (NULLS DISTINCT): give each its own marker.
    return object() if value is None else value


_SKIP = object()  # a row that cannot be made (a one-to-one ran out of targets)


def _value(
    f: models.Field[Any, Any], i: int, targets: Sequence[Any] | None, position: int = 0
) -> Any:
    """The value of field ``f`` in synthetic row number ``i``.

    The ``position``-th relation of a model advances one step more each time the first has
    gone round its targets, so that two foreign keys over the same rows pair every target
    with every other (a unique pair of foreign keys gets as many rows as it can hold).
    """
    if f.null and i % 3 == 2 and not f.primary_key:
        return None
    if f.is_relation:
        if not targets:
            if f.null:
                return None
            raise _Unfillable(f"`{f.name}` needs a row of an empty table")
        if f.one_to_one or f.unique:
            return targets[i] if i < len(targets) else (None if f.null else _SKIP)
        return targets[(i + (i // len(targets)) * position) % len(targets)]
    if f.choices:
        flat = [value for value, _label in f.flatchoices]
        if flat:
            return flat[i % len(flat)]
    made = _typed(f, i)
    if made is not NOT_PROVIDED:
        return made
    if f.has_default():
        return f.get_default()
    if getattr(f, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
        return NOT_PROVIDED  # left out of the INSERT: the database fills it
    if f.null:
        return None
    raise _Unfillable(f"`{f.name}`: no synthetic value for {type(f).__name__}")


def _typed(f: models.Field[Any, Any], i: int) -> Any:
    n = i + 1
    if isinstance(f, models.BooleanField):
        return i % 2 == 0
    if isinstance(f, models.EmailField):
        return _fit(f"user{n}@example.com", f, tail=True)
    if isinstance(f, models.URLField):
        return _fit(f"https://example.com/{n}", f, tail=True)
    if isinstance(f, models.SlugField):
        return _fit(f"slug-{n}", f, tail=True)
    if isinstance(f, models.GenericIPAddressField):
        return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    if isinstance(f, models.FileField):
        return _fit(f"seed/{n}.bin", f, tail=True)
    if isinstance(f, models.CharField | models.TextField):
        return _fit(f"{f.name} {n}", f, tail=True)
    if isinstance(f, models.UUIDField):
        return uuid.UUID(int=n)
    if isinstance(f, models.SmallIntegerField | models.PositiveSmallIntegerField):
        return n % 32767
    if isinstance(f, models.IntegerField):  # Big/Positive/plain integers
        return n
    if isinstance(f, models.DecimalField):
        places = f.decimal_places or 0
        whole = n % (10 ** max((f.max_digits or 10) - places, 1))
        return decimal.Decimal(whole).quantize(decimal.Decimal(1).scaleb(-places))
    if isinstance(f, models.FloatField):
        return n * 1.5
    if isinstance(f, models.DateTimeField):
        from django.conf import settings
        from django.utils import timezone

        # Wrapped so that traffic's large row numbers stay before year 9999.
        moment = _EPOCH + datetime.timedelta(hours=n % 60_000_000)
        return timezone.make_aware(moment, datetime.UTC) if settings.USE_TZ else moment
    if isinstance(f, models.DateField):
        return (_EPOCH + datetime.timedelta(days=n % 2_500_000)).date()
    if isinstance(f, models.TimeField):
        return datetime.time(n % 24, n % 60)
    if isinstance(f, models.DurationField):
        return datetime.timedelta(seconds=n)
    if isinstance(f, models.JSONField):
        return {"n": n}
    if isinstance(f, models.BinaryField):
        return str(n).encode()
    return NOT_PROVIDED


def _fit(text: str, f: models.Field[Any, Any], tail: bool = False) -> str:
    """Cut ``text`` to the field's max_length, keeping its distinct end (the number)."""
    limit = getattr(f, "max_length", None)
    if not limit or len(text) <= limit:
        return text
    return text[-limit:] if tail else text[:limit]


def new_row(
    model: type[models.Model],
    alias: str,
    n: int,
    *,
    minimal: bool = False,
    avoid: Callable[[str], Collection[Any]] = lambda table: (),
    prefer: Callable[[models.Field[Any, Any]], Sequence[Any]] = lambda relation: (),
    attempts: int = 8,
    fresh: bool = True,
) -> models.Model | None:
    """Return an unsaved row as code would create it: fields with a default left to the
    model (the old release only knows its own defaults), the others filled like seeded
    row ``n`` (pick ``n`` beyond the seeded rows, so unique values stay unique);
    ``minimal`` leaves every nullable field NULL, as a form left blank does.

    Relations point at rows already there, never at those ``avoid(table)`` names (rows
    another session is about to delete), first at those ``prefer(relation)`` names (rows
    the same code version just made, as code that creates an object and its parts does),
    chosen so that the model's unique sets stay unique (a unique pair of foreign keys is
    the common case). When every target of a one-to-one is taken, a fresh target row is
    saved first (a sign-up makes the user and the profile together). None when a required
    relation has no target row, or no free combination turns up in ``attempts`` tries."""
    fields = [f for f in _concrete(model) if not _automatic(f)]
    targets: dict[str, list[Any]] = {}
    for f in fields:
        if f.is_relation and not _left_to_default(f):
            related = f.related_model._meta  # type: ignore[union-attr]
            manager = f.related_model._base_manager.db_manager(alias)  # type: ignore[union-attr]
            pks = manager.order_by("pk").values_list(f.target_field.attname, flat=True)
            skip = avoid(related.db_table)
            mine = [pk for pk in prefer(f) if pk not in skip]
            # A preferred target alone when the relation is not unique: it is chosen.
            single = mine[-1:] if mine and not (f.one_to_one or f.unique) else mine
            rest = [pk for pk in pks[: _TARGETS + len(skip)] if pk not in skip]
            targets[f.name] = single or rest
    checks = _unique_tables(model, alias)
    # A field left to its default still takes part in a unique set with others: a second
    # image of one product at the default position repeats the first (see ``_taken``).
    defaults = {
        f.attname: f.default
        for f in fields
        if _left_to_default(f) and not callable(f.default)
    }
    for attempt in range(attempts):
        values = _new_values(fields, n + attempt * 7919, targets, minimal, connections[alias])
        if values is None:
            return None
        if not _taken(values, checks, defaults):
            return model(**values)
    exclusive = [f for f in fields if f.is_relation and (f.one_to_one or f.unique)]
    if not fresh or not exclusive:
        return None
    for f in exclusive:
        target = new_row(f.related_model, alias, n + 1, avoid=avoid, fresh=False)  # type: ignore[arg-type]
        if target is None:
            return None
        target.save(using=alias, force_insert=True)
        targets[f.name] = [getattr(target, f.target_field.attname)]  # type: ignore[attr-defined]
    values = _new_values(fields, n, targets, minimal, connections[alias])
    if values is None or _taken(values, checks, defaults):
        return None
    return model(**values)


def _left_to_default(f: models.Field[Any, Any]) -> bool:
    """Whether code creating a row leaves ``f`` to its default: not a primary key, and not
    a NOT NULL field whose default is None (``default=None`` that the code always sets,
    since inserting it fails in every release)."""
    if not f.has_default() or f.primary_key:
        return False
    return f.null or f.default is not None


def _taken(
    values: dict[str, Any],
    checks: list[tuple[tuple[str, ...], Any]],
    defaults: Mapping[str, Any] | None = None,
) -> bool:
    """Whether a row with these values would repeat another's unique set, in the table that
    holds it (``_unique_tables``). In a set of several fields, one left to its constant
    default (``defaults``) counts with that value: the others are this module's choice and
    can avoid it. A unique field of its own left to its default is the code's choice, and
    two rows that both rely on it collide in production too."""
    for names, rows in checks:
        if not any(a in values for a in names):
            continue
        known = {**(defaults or {}), **values} if len(names) > 1 else values
        row = {a: known.get(a) for a in names}
        if all(v is not None for v in row.values()) and rows.filter(**row).exists():
            return True
    return False


_TARGETS = 64  # rows of a related table new rows choose from


def _new_values(
    fields: Sequence[models.Field[Any, Any]],
    n: int,
    targets: dict[str, list[Any]],
    minimal: bool,
    connection: Any,
) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    for k, f in enumerate(fields):
        if _left_to_default(f):
            continue
        if minimal and f.null and not f.primary_key:
            values[f.attname] = None
            continue
        choices = targets.get(f.name)
        if f.is_relation and (f.one_to_one or f.unique) and choices:
            # Any target may be free; the caller's uniqueness test decides.
            values[f.attname] = choices[n % len(choices)]
            continue
        try:
            value = _value(f, n, choices, k)
        except _Unfillable:
            return None
        if value is _SKIP:
            return None
        if value is not NOT_PROVIDED:
            values[f.attname] = _accepted(f, value, connection)
    return values
