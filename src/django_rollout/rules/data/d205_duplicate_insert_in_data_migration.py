"""D205: a data migration inserting rows that may already have been written."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import migrations, models
from django.db.models.fields import AutoFieldMixin

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import OperationContext, Unit
from django_rollout.graph.model import ModelKey, ModelView, column_name, related_key
from django_rollout.graph.source import relative
from django_rollout.rules.base import Rule
from django_rollout.rules.data._runpython import Insert, forward_facts
from django_rollout.rules.data._schema import (
    constraint_set,
    earlier_operations,
    expression_fields,
    insert_handles_conflicts,
    runsql_actions,
    table_ref,
    unique_sets,
    walk_operations,
)
from django_rollout.vendors.base import StatementKind as K

_SELECT = re.compile(r"\bselect\b", re.IGNORECASE)


class DuplicateInsertInDataMigration(Rule):
    """A data migration that inserts rows another writer may already have written.

    What it does
    ------------
    Flags, when the inserted rows can clash on a key, ``RunPython`` forward code that inserts
    with no conflict handling:
    ``Model.objects.create(...)``, ``bulk_create(...)`` without ``ignore_conflicts=True`` /
    ``update_conflicts=True``, or ``Model(...)`` then ``.save()`` (without an explicit
    ``pk``, which makes ``save()`` an UPDATE-or-INSERT), on a model looked up with a
    literal ``apps.get_model("app", "Model")``; and RunSQL ``INSERT`` into a table of S0
    without ``ON CONFLICT`` or a ``WHERE NOT EXISTS`` guard. A clash needs a key: the model
    (or a multi-table parent it inserts into) has a uniqueness beyond its automatic primary
    key (a unique field or one-to-one, ``unique_together``, a ``UniqueConstraint``, a
    primary key that is not generated), or the insert sets the primary key itself
    (``create(id=1, ...)``, an ``INSERT`` naming the key column or no columns). Without one
    nothing can fail: the rule stays silent, as it does for an insert whose every key
    includes a row the same function inserted before it (``workflow =
    Workflow.objects.create(...)``, then ``WorkflowTask.objects.create(workflow=workflow,
    ...)``: that key cannot exist yet), or, in an atomic migration, a permission the deploy
    introduces (looked up by ``codename`` literals, directly or through a helper function
    of the module, that S0's models do not declare: Django creates permission rows only
    after ``migrate``, so no grant of it exists yet). It fires when the table is in
    S0 (the old release writes it while the migration runs), or when it was created earlier
    in the deploy unit or in a non-atomic migration: between the two steps the new release's
    start-up code (``AppConfig.ready()``, which also runs when ``manage.py migrate`` starts)
    or a half-run deploy that is retried may have written the same rows. A table created by
    the same atomic migration is silent: nothing else can see it before the insert commits.
    How likely a clash is sets the severity. A warning: rows driven by data (a loop or
    comprehension over rows, a query or a cursor, ``INSERT ... SELECT``: a copy meets the
    keys another writer made meanwhile), a table the project's start-up queries name, a
    non-atomic migration, or a start-up that could not reach a database (unknown). Info:
    seed rows, written once with keys the code spells (``create(name="editors")``, a loop
    over a literal list or ``range()``, ``INSERT ... VALUES``) into a table of S0 that
    start-up code does not touch, in an atomic migration: only a row made by hand, or left
    by a rolled-back run whose reverse is a no-op, can hold that key.
    Also silent: ``get_or_create``, ``update_or_create``, ``.update(...)``, an insert
    inside an ``if`` that queries the model first (unless the ``if`` filters the model by
    keywords that some key it can clash on does not hold: ``if not
    WorkflowPage.objects.filter(workflow=w, page=p).exists()`` before a create, on a table
    unique on ``page`` alone, lets a row of ``p`` with another workflow through, and the
    insert clashes; ``pk``, ``page_id`` and lookups such as ``key__iexact`` count as the
    key's fields, and so do the fields a conditional key's condition reads), in the
    ``except DoesNotExist`` of a
    lookup, catching ``IntegrityError`` inside ``transaction.atomic()`` (a savepoint) or in
    a non-atomic migration (without a savepoint, on PostgreSQL, the swallowed error aborts
    the migration's transaction: flagged with that message), or driven by a loop over rows
    selected for lacking one (``Order.objects.filter(invoices__isnull=True)``);
    ``reverse_code``; models looked up by a computed name (unknown). Only the forward
    function's own body is read.

    Why it breaks production
    ------------------------
    The rows are already there, and the key rejects the copy: the migration fails with
    ``duplicate key value violates unique constraint`` (django-constance's copy into its new
    table collided with the keys the new release wrote at start-up), and the deploy stops.
    A retried half-run fails the same way on the rows its first run committed. (Without a
    key the insert succeeds and the rows are duplicated: a data-quality matter, not a failed
    deploy, and not reported.)

    Example
    -------
    ```python
    def copy_config(apps, schema_editor):
        Config = apps.get_model("shop", "Config")
        Setting = apps.get_model("shop", "Setting")
        Setting.objects.bulk_create(
            [Setting(key=c.key, value=c.value) for c in Config.objects.all()]
        )

    before = [
        migrations.CreateModel("Config", [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=100, unique=True)),
            ("value", models.TextField()),
        ]),
        migrations.CreateModel("Setting", [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=100, unique=True)),
            ("value", models.TextField()),
        ]),
    ]
    operations = [
        migrations.RunPython(copy_config, migrations.RunPython.noop),
    ]
    ```

    Use instead
    -----------
    ```python
    def copy_config(apps, schema_editor):
        Config = apps.get_model("shop", "Config")
        Setting = apps.get_model("shop", "Setting")
        Setting.objects.bulk_create(
            [Setting(key=c.key, value=c.value) for c in Config.objects.all()],
            ignore_conflicts=True,
        )

    before = [
        migrations.CreateModel("Config", [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=100, unique=True)),
            ("value", models.TextField()),
        ]),
        migrations.CreateModel("Setting", [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=100, unique=True)),
            ("value", models.TextField()),
        ]),
    ]
    operations = [
        migrations.RunPython(copy_config, migrations.RunPython.noop),
    ]
    ```
    """

    id = "D205"
    sqlstates = ("23505",)
    name = "duplicate-insert-in-data-migration"
    severity = Severity.WARNING
    message = (
        "`{call}` inserts into `{table}`, which {writers} may already have written: a row"
        " with the same {key} fails the migration with `duplicate key value violates unique"
        " constraint`"
    )
    absorbed_message = (
        "`{call}` swallows `IntegrityError` inside the migration's transaction: on PostgreSQL"
        " a clash with rows already in `{table}` aborts the transaction and the next statement"
        " fails with `current transaction is aborted`"
    )
    guarded_message = (
        "`{call}` runs only when a lookup by {looked_up} finds no row, but `{table}` is unique"
        " on its {key}: a row already there with that key and another value passes the"
        " lookup, and the insert fails the migration with `duplicate key value violates"
        " unique constraint`"
    )
    seed_message = (
        "`{call}` inserts a fixed row into `{table}`: if a row with the same {key} is already"
        " there (made by hand, or left by a rolled-back run whose reverse is a no-op), the"
        " migration fails with `duplicate key value violates unique constraint`"
    )
    help = (
        "Make the insert idempotent: `get_or_create`/`update_or_create`, `bulk_create(...,"
        " ignore_conflicts=True)`, or `INSERT ... ON CONFLICT DO NOTHING`"
    )
    recipe_steps = (
        "Key every inserted row on its natural key (a unique field of `{model}`) and write it"
        " with {model}.objects.update_or_create(<key>=..., defaults={{...}}) or"
        " get_or_create(...), so rows already written are kept, not duplicated.",
        "For many rows: {model}.objects.bulk_create(objs, ignore_conflicts=True) (or"
        " update_conflicts=True, unique_fields=[...], update_fields=[...]) in batches;"
        " in SQL: INSERT INTO {table} ... ON CONFLICT (<key>) DO NOTHING.",
        "If start-up code of the new release writes `{table}` too, make both writers use the"
        " same natural key, so whichever runs second finds the row.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if not isinstance(op, migrations.RunPython):
            return
        facts = forward_facts(op, ctx.app_label)
        if facts is None:
            return
        seen: set[tuple[ModelKey, int]] = set()
        for insert in facts.inserts:
            if (insert.key, insert.line) in seen:
                continue
            seen.add((insert.key, insert.line))
            model = ctx.unit.model_now(insert.key)
            if model is None:
                continue
            writers = self._writers(ctx, insert.key, model.db_table, insert.copied)
            if writers is None:
                continue
            keys = clashing_keys(ctx.unit, model, insert.rows)
            fresh = {**insert.fresh, **_new_permissions(ctx, insert)}
            if not keys or all(_fresh_in_every_row(k, insert.rows, fresh) for k in keys):
                continue
            if insert.guard_fields is not None:
                # Looked up first: a clash passes the lookup only on a key that lacks one of
                # the fields looked up by (a row with that key and another value there).
                looked_up = _field_names(model, insert.guard_fields)
                conditions = _condition_fields(ctx.unit, model)
                keys = [
                    k
                    for k in keys
                    if not looked_up <= k | conditions.get(k, frozenset())
                    and not _fresh_in_every_row(k, insert.rows, fresh)
                ]
                if not keys:
                    continue
            # Swallowing the clash works only where a failed statement does not poison the
            # transaction: outside one (non-atomic), or on a vendor that keeps it usable.
            if insert.absorbed and not (ctx.atomic and ctx.unit.vendor == "postgresql"):
                continue
            who, severity = writers
            message = None
            if insert.absorbed:
                message = self.absorbed_message
            elif insert.guard_fields is not None:
                message = self.guarded_message
            elif severity is Severity.INFO:
                message = self.seed_message
            yield self.finding(
                ctx,
                severity=severity,
                message=message,
                call=insert.call,
                writers=who,
                key=_shown(keys),
                model=model.name,
                table=model.db_table,
                looked_up=", ".join(f"`{f}`" for f in sorted(insert.guard_fields or ())),
                location=Location(relative(facts.path), insert.line),
            )

    def _writers(
        self, ctx: OperationContext, key: ModelKey, table: str, copied: bool
    ) -> tuple[str, Severity] | None:
        """Return who else may have written the rows, and how likely a clash is; None when
        nobody can have written them."""
        startup = ctx.unit.startup_tables
        if startup is not None and table in startup:
            return (
                "the new release's start-up code (it queries the table while Django starts,"
                " in every process, `migrate` included)",
                Severity.WARNING,
            )
        if ctx.unit.in_s0(key):
            if not ctx.atomic:
                return (
                    "the release still serving or an earlier half-run of this non-atomic"
                    " migration",
                    Severity.WARNING,
                )
            if copied or startup is None:
                return (
                    "the release still serving, start-up code or an earlier half-run",
                    Severity.WARNING,
                )
            # Seed rows with keys spelled in the code: only a row made by hand, or left by
            # a rolled-back run, can hold the same key.
            return ("", Severity.INFO)
        created_here = any(
            isinstance(op, migrations.CreateModel) and (ctx.app_label, op.name_lower) == key
            for op in walk_operations(earlier_operations(ctx))
        )
        if created_here and ctx.atomic:
            return None
        return "the new release's start-up code or an earlier half-run", Severity.WARNING

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind is not K.INSERT or insert_handles_conflicts(action.sql):
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None:
                continue
            keys = sql_clashing_keys(ctx.unit, ref.now, action.columns)
            if not keys:
                continue
            call = " ".join(action.sql.split())
            # ``INSERT ... SELECT`` copies rows; ``INSERT ... VALUES`` writes seed rows.
            copied = _SELECT.search(action.sql) is not None
            writers = self._writers(ctx, ref.now.key, ref.now.db_table, copied)
            if writers is None:
                continue
            who, severity = writers
            yield self.finding(
                ctx,
                severity=severity,
                message=self.seed_message if severity is Severity.INFO else None,
                call=call if len(call) <= 60 else call[:57] + "...",
                key=_shown(keys),
                writers=who,
                model=ref.now.name,
                table=ref.now.db_table,
            )


def _pk(model: ModelView) -> tuple[str | None, Any]:
    for name, field in model.fields.items():
        if getattr(field, "primary_key", False):
            return name, field
    return None, None  # Django adds an automatic ``id``


def _generated(field: Any) -> bool:
    """Return True for a primary key the database or the parent row fills: an auto field or
    a multi-table child's link to its parent (``page_ptr``)."""
    if field is None or isinstance(field, AutoFieldMixin):
        return True
    return bool(getattr(getattr(field, "remote_field", None), "parent_link", False))


def _lineage(unit: Unit, model: ModelView) -> list[ModelView]:
    """Return the model and the multi-table parents an insert into it writes too."""
    chain = [model]
    seen = {model.key}
    while True:
        _, pk = _pk(chain[-1])
        if pk is None or not _generated(pk) or isinstance(pk, AutoFieldMixin):
            return chain
        parent_key = related_key(pk, chain[-1].key[0])
        parent = unit.model_now(parent_key) if parent_key is not None else None
        if parent is None or parent.key in seen:
            return chain
        seen.add(parent.key)
        chain.append(parent)


def clashing_keys(
    unit: Unit, model: ModelView, rows: Sequence[Mapping[str, ast.expr]] | None
) -> list[frozenset[str]]:
    """Return the unique keys (field names) an insert into ``model`` can clash on: every
    uniqueness of the model and its multi-table parents except a generated primary key, and
    that key too when a row sets it. ``rows`` None (not spelled out) sets no key we can see."""
    keys: list[frozenset[str]] = []
    for each in _lineage(unit, model):
        pk_name, pk = _pk(each)
        auto = _generated(pk)
        for unique in unique_sets(each):
            if auto and unique.fields == frozenset({pk_name}):
                continue
            keys.append(unique.fields)
        if auto and rows and each is model:
            names = {"pk", pk_name or "id", f"{pk_name or 'id'}_id"}
            if any(names & set(row) for row in rows):
                keys.append(frozenset({pk_name or "id"}))
    return keys


def sql_clashing_keys(
    unit: Unit, model: ModelView, columns: Sequence[str]
) -> list[frozenset[str]]:
    """Return the unique keys a SQL INSERT into ``model`` can clash on (no column list means
    every column, the primary key included)."""
    keys: list[frozenset[str]] = []
    pk_name, pk = _pk(model)
    auto = _generated(pk)
    for unique in unique_sets(model):
        if auto and unique.fields == frozenset({pk_name}):
            continue
        keys.append(unique.fields)
    pk_column = column_name(pk_name, pk) if pk_name and pk is not None else "id"
    if auto and (not columns or (pk_column or "id").lower() in {c.lower() for c in columns}):
        keys.append(frozenset({pk_name or "id"}))
    return keys


def _value(row: Mapping[str, ast.expr], name: str) -> ast.expr | None:
    for spelled in (name, f"{name}_id", "pk" if name == "id" else ""):
        if spelled and spelled in row:
            return row[spelled]
    return None


def _is_fresh(value: ast.expr | None, fresh: Mapping[str, int]) -> bool:
    """Return True for ``x``, ``x.pk`` or ``x.id`` where ``x`` holds a row new at this point."""
    if isinstance(value, ast.Attribute) and value.attr in ("pk", "id"):
        value = value.value
    return isinstance(value, ast.Name) and value.id in fresh


def _fresh_in_every_row(
    key: frozenset[str], rows: Sequence[Mapping[str, ast.expr]] | None, fresh: Mapping[str, int]
) -> bool:
    """Return True when, in every row the insert writes, some field of ``key`` holds a row
    that did not exist before the migration: that key value cannot exist anywhere yet."""
    if not rows or not fresh:
        return False
    return all(any(_is_fresh(_value(row, f), fresh) for f in key) for row in rows)


_PERMISSION: ModelKey = ("auth", "permission")


def _new_permissions(ctx: OperationContext, insert: Insert) -> dict[str, int]:
    """Return the variables of ``insert`` holding a permission the deploy introduces.

    Django creates permission rows after ``migrate`` (``post_migrate``) from the models'
    ``Meta.permissions`` and default permissions. A codename the S0 models do not declare
    has no row before this deploy, so no row of any table can reference it yet: granting
    it (``GroupPermission.objects.create(permission=p, ...)``) in an atomic migration
    cannot clash. The variable must be a lookup pinned to such codenames only.
    """
    if not ctx.atomic:
        return {}
    wanted = {
        name: lookup.literal("codename")
        for name, lookup in insert.looked_up.items()
        if lookup.key == _PERMISSION
    }
    if not any(wanted.values()):
        return {}
    introduced = _introduced_codenames(ctx.unit)
    return {
        name: insert.line
        for name, codenames in wanted.items()
        if codenames and introduced.issuperset(codenames)
    }


def _introduced_codenames(unit: Unit) -> set[str]:
    """Return the permission codenames the models declare now and S0's did not."""
    introduced: set[str] = set()
    for key in unit.state.models:
        now = unit.model_now(key)
        if now is None:
            continue
        declared = _codenames(now)
        s0 = unit.lineage.s0_model(key)
        introduced |= declared - (_codenames(s0) if s0 is not None else set())
    return introduced


def _codenames(model: ModelView) -> set[str]:
    options = model.options
    names = {str(p[0]) for p in options.get("permissions", ()) if p}
    for action in options.get("default_permissions", ("add", "change", "delete", "view")):
        names.add(f"{action}_{model.name.lower()}")
    return names


def _condition_fields(unit: Unit, model: ModelView) -> dict[frozenset[str], frozenset[str]]:
    """The fields each conditional unique key's condition reads (``UniqueConstraint(fields=
    ["email"], condition=Q(deleted=False))``): a lookup that filters on them as well as on
    the key still finds every row the key can clash with."""
    out: dict[frozenset[str], frozenset[str]] = {}
    for each in _lineage(unit, model):
        for constraint in each.options.get("constraints") or ():
            if isinstance(constraint, models.UniqueConstraint) and constraint.condition:
                key = constraint_set(constraint).fields
                read = frozenset(expression_fields(constraint.condition))
                out[key] = out.get(key, frozenset()) | read
    return out


def _field_names(model: ModelView, spelled: frozenset[str]) -> frozenset[str]:
    """The model's field names for lookup keywords: ``pk`` is the primary key, and
    ``author_id`` the foreign key ``author``."""
    pk_name, _ = _pk(model)
    names = set()
    for name in spelled:
        if name == "pk":
            name = pk_name or "id"
        elif name not in model.fields and name.endswith("_id") and name[:-3] in model.fields:
            name = name[:-3]
        names.add(name)
    return frozenset(names)


def _shown(keys: Sequence[frozenset[str]]) -> str:
    shown = [
        "(" + ", ".join(f"`{f}`" for f in sorted(k)) + ")" for k in dict.fromkeys(keys)
    ]
    return "key " + " or ".join(shown[:3]) + (" ..." if len(shown) > 3 else "")
