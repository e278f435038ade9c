"""D201: uniqueness added over rows that collide, or may."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import ModelKey, ModelView, single_lookup
from django_rollout.rules.base import Rule
from django_rollout.rules.data._schema import (
    Fill,
    UniqueSet,
    added_in_this_migration,
    already_unique,
    column_of,
    constraint_set,
    earlier_operations,
    existing_fill,
    few_rows,
    graded,
    runsql_actions,
    size_note,
    table_ref,
    touched_in_unit,
    written_by_data_step,
)
from django_rollout.vendors.base import StatementKind as K

# A unique key as it compares across a drop and a re-add: fields, condition, expressions,
# and whether NULLs are distinct.
_Key = tuple[frozenset[str], Any, tuple[Any, ...], bool]


def _plain(fields: frozenset[str]) -> _Key:
    return (fields, None, (), True)


def _constraint_key(constraint: models.UniqueConstraint) -> _Key:
    return (
        frozenset(constraint.fields),
        constraint.condition,
        tuple(constraint.expressions),
        constraint.nulls_distinct is not False,
    )


def _keys(model: ModelView) -> list[_Key]:
    """Return every unique key of ``model``: unique fields, unique_together, constraints."""
    keys = [_plain(frozenset({n})) for n, f in model.fields.items() if f.unique]
    keys.extend(_plain(frozenset(t)) for t in model.options.get("unique_together") or ())
    keys.extend(
        _constraint_key(c)
        for c in model.options.get("constraints") or ()
        if isinstance(c, models.UniqueConstraint)
    )
    return keys


def _held_at_start(start: Sequence[_Key], key: _Key) -> bool:
    """Return True when the model kept ``key`` unique as the migration started: the same key,
    or a plain unique key over some of its fields (the rows then cannot collide on more)."""
    fields, condition, expressions, nulls_distinct = key
    for held in start:
        if held == key:
            return True
        held_fields, held_condition, held_expressions, held_distinct = held
        if (
            held_condition is None
            and not held_expressions
            and held_distinct
            and held_fields <= fields
            and nulls_distinct
        ):
            return True
    return False


def _values_of(condition: Any) -> tuple[str, frozenset[Any]] | None:
    """Return (field, values) for a condition ``Q(f=v)`` or ``Q(f__in=[...])``, else None."""
    found = single_lookup(condition)
    if found is None:
        return None
    name, lookup, value = found
    try:
        if lookup == "exact":
            return name, frozenset({value})
        if lookup == "in" and isinstance(value, list | tuple | set | frozenset):
            return name, frozenset(value)
    except TypeError:  # unhashable values
        return None
    return None


def _widened_to_new_values(
    ctx: OperationContext, start: Sequence[_Key], key: _Key
) -> str | None:
    """Return the field when ``key`` re-adds a partial unique key held as the migration
    started, over the same fields, with its condition ``f IN (...)`` widened only by values
    outside the S0 field's ``choices`` (a status this release introduces): the rows that
    can hold them were written by nobody the migrations show."""
    fields, condition, expressions, nulls_distinct = key
    new = _values_of(condition)
    if new is None or expressions:
        return None
    name, values = new
    for held in start:
        held_fields, held_condition, held_expressions, held_distinct = held
        old = _values_of(held_condition)
        if (
            old is None
            or held_fields != fields
            or held_expressions
            or held_distinct != nulls_distinct
            or old[0] != name
            or not old[1] <= values
        ):
            continue
        s0_field = ctx.s0_field(name)
        choices = {c[0] for c in getattr(s0_field, "choices", None) or () if isinstance(c, tuple)}
        if choices and not (values - old[1]) & choices:
            return name
    return None


def _null_in_existing_rows(ctx: OperationContext, name: str) -> bool:
    """Return True when every row already in the table holds NULL in field ``name``: it was
    added in the deploy unit, nullable with nothing to fill it, and no data step wrote it."""
    if ctx.s0_field(name) is not None or ctx.key is None:
        return False
    added: models.Field[Any, Any] | None = None
    for op in earlier_operations(ctx):
        if isinstance(op, migrations.SeparateDatabaseAndState):
            return False
        if isinstance(op, migrations.RunPython | migrations.RunSQL) and added is not None:
            return False  # a data step since the AddField may have filled it
        if (
            isinstance(op, migrations.AddField)
            and (ctx.app_label, op.model_name_lower) == ctx.key
            and op.name == name
        ):
            added = op.field
    if added is not None:
        return existing_fill(added).fill is Fill.NULL
    # Added by an earlier migration of the unit (a deploy unit of several migrations).
    field = ctx.before.fields.get(name) if ctx.before is not None else None
    if field is None or not field.null or existing_fill(field).fill is not Fill.NULL:
        return False
    # NULL unless a data step of the unit since wrote the table.
    assert ctx.before is not None
    return not touched_in_unit(ctx, ctx.key, ctx.before.db_table)


_UNIQUE_SQL = (
    K.ADD_UNIQUE_CONSTRAINT,
    K.ADD_PRIMARY_KEY,
    K.CREATE_INDEX,
    K.CREATE_INDEX_CONCURRENTLY,
)


class UniquenessOverCollidingRows(Rule):
    """Uniqueness added where the rows already in the table collide, or may.

    What it does
    ------------
    Flags, as an error, a unique column (``unique=True``, ``primary_key``, a ``OneToOneField``,
    or a ``UniqueConstraint`` over columns added just before it in the same migration) added
    to a table in S0 while every existing row gets one and the same value: a ``default``
    (a callable such as ``uuid.uuid4`` is called once, for all rows), the ``''`` Django uses
    for a NOT NULL ``blank=True`` text field, ``auto_now``, or a constant ``db_default``.
    Flags, as a warning, uniqueness added over columns that existed in S0 (``AlterField``
    to ``unique=True``, ``AddConstraint(UniqueConstraint)``, ``AlterUniqueTogether``,
    RunSQL ``ADD CONSTRAINT ... UNIQUE`` / ``CREATE UNIQUE INDEX``, with or without
    CONCURRENTLY): their values may hold duplicates; that warning becomes info when a data
    step walked before it (an earlier migration, deployed or not, or an earlier operation of
    this one) writes one of the columns into existing rows: the team prepared the values.
    Stays silent for a nullable column without a default (NULLs never collide unless
    ``nulls_distinct=False``), also when it is one column of a set whose other columns existed
    in S0 (every existing row holds NULL in the set), a volatile ``db_default`` such as
    ``RandomUUID()`` (one value per row), columns already unique in S0, a uniqueness that an
    atomic migration drops and re-adds unchanged (``unique_together`` turned into the same
    ``UniqueConstraint``, a constraint re-created with the same fields and condition: the
    rows were unique when the migration started and nothing else writes in between),
    tables created in the deploy unit, ``ADD CONSTRAINT ... UNIQUE USING INDEX`` (the
    index was already built) and the last step of the safe recipe: ``CREATE UNIQUE INDEX
    CONCURRENTLY`` as the database side of a ``SeparateDatabaseAndState`` whose state side
    adds the same model's uniqueness (the recipe presumes the backfill and the duplicate
    check before it; a bare RunSQL unique index, concurrent or not, is still flagged). A
    partial key re-added with its condition ``f IN (...)`` widened only by values outside
    the S0 field's ``choices`` (a status this release introduces), with no data step
    writing ``f``, is info: only rows written outside the choices can hold them. With
    S0 row counts, a table of 0 or 1 rows makes it info.

    Why it breaks production
    ------------------------
    PostgreSQL builds the unique index over the rows that are there and stops at the first
    pair: ``could not create unique index "..."  DETAIL: Key (token)=(4f1c...) is
    duplicated``. The migration fails (an error, not a slowdown) on every database that holds
    two rows, typically production only, since test databases are empty. The documented
    Django pitfall is ``UUIDField(default=uuid.uuid4, unique=True)``: the default is called
    once and every existing row gets the same UUID. An index built CONCURRENTLY fails the same
    way, and leaves an INVALID index behind that must be dropped.

    Example
    -------
    ```python
    import uuid
    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.EmailField(max_length=254)),
        ]),
    ]
    operations = [
        migrations.AddField(
            "customer", "public_id", models.UUIDField(default=uuid.uuid4, unique=True)
        ),
    ]
    ```

    Use instead
    -----------
    ```python
    import uuid
    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.EmailField(max_length=254)),
        ]),
    ]
    operations = [
        # Every existing row holds NULL, and NULLs never collide: backfill one UUID per row
        # next, then make the column NOT NULL in a later release.
        migrations.AddField("customer", "public_id", models.UUIDField(null=True, unique=True)),
    ]
    ```
    """

    id = "D201"
    sqlstates = ("23505",)
    name = "uniqueness-over-colliding-rows"
    severity = Severity.ERROR
    message = (
        "`{table}`.`{column}` is added UNIQUE with {value} in every existing row: the migration"
        " fails with `could not create unique index` once the table holds two rows{size}"
    )
    may_message = (
        "uniqueness is added over existing values of `{table}` ({columns}): any duplicate makes"
        " the migration fail with `could not create unique index ... is duplicated`{size}"
    )
    widened_message = (
        "uniqueness over `{table}` ({columns}) is re-added with its condition widened to"
        " `{field}` values the old release's choices do not offer: rows holding them, written"
        " outside the choices, could collide with the rows already covered"
    )
    prepared_message = (
        "uniqueness is added over existing values of `{table}` ({columns}), which an earlier"
        " data step wrote: unless it left no duplicates, the migration fails with `could not"
        " create unique index ... is duplicated`{size}"
    )

    def __init__(self) -> None:
        # The unique keys of each model as the judged migration found it (before its first
        # operation on the model): operations are judged in order, so the first context seen
        # for a model carries that state.
        self._start: tuple[migrations.Migration, dict[ModelKey, list[_Key]]] | None = None
    help = (
        "Give each existing row its own value before adding the uniqueness, and check"
        " `{table}` ({columns}) for duplicates first"
    )
    recipe_steps = (
        "For a new column: add `{field}` with null=True and no default (existing rows hold"
        " NULL, which never collides), or with a volatile db_default such as RandomUUID().",
        "Backfill one distinct value per existing row in batches, in a migration of its own:"
        ' RunPython with apps.get_model("{app_label}", "{model}") (e.g. uuid.uuid4() per'
        " row, not a shared default).",
        "Look for duplicates right before adding the uniqueness: SELECT {columns}, count(*)"
        " FROM {table} GROUP BY {columns} HAVING count(*) > 1; and resolve them.",
        "Build the index without blocking writes in a non-atomic migration:"
        ' SeparateDatabaseAndState(database_operations=[RunSQL("CREATE UNIQUE INDEX'
        ' CONCURRENTLY ... ON {table} ({columns})")], state_operations=[<the unique'
        " change>]). CONCURRENTLY changes the lock, not the data: a duplicate still fails it"
        " and leaves an INVALID index to DROP.",
    )

    def _remember_start(self, ctx: OperationContext) -> dict[ModelKey, list[_Key]]:
        if self._start is None or self._start[0] is not ctx.migration:
            self._start = (ctx.migration, {})
        start = self._start[1]
        if ctx.before is not None:
            start.setdefault(ctx.before.key, _keys(ctx.before))
        return start

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        start = self._remember_start(ctx)
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if not ctx.table_in_s0 or ctx.before is None or ctx.after is None:
            return
        if isinstance(op, migrations.AddField):
            yield from self._added(ctx, op.name, op.field)
            return
        new_sets: list[tuple[UniqueSet, _Key]] = []
        if isinstance(op, migrations.AlterField):
            old = ctx.before.fields.get(op.name)
            if op.field.unique and old is not None and not old.unique:
                names = frozenset({op.name})
                new_sets.append((UniqueSet(names), _plain(names)))
        elif isinstance(op, migrations.AddConstraint) and isinstance(
            op.constraint, models.UniqueConstraint
        ):
            new_sets.append((constraint_set(op.constraint), _constraint_key(op.constraint)))
        elif isinstance(op, migrations.AlterUniqueTogether):
            before = {frozenset(t) for t in ctx.before.options.get("unique_together") or ()}
            after = {frozenset(t) for t in ctx.after.options.get("unique_together") or ()}
            new_sets.extend((UniqueSet(s), _plain(s)) for s in after - before)
        for unique, key in new_sets:
            held = start.get(ctx.before.key, [])
            if ctx.atomic and _held_at_start(held, key):
                continue  # dropped earlier in this transaction, re-added unchanged
            widened = _widened_to_new_values(ctx, held, key) if ctx.atomic else None
            if widened is not None:
                columns = tuple(
                    column_of(f, ctx.before.fields[f]) if f in ctx.before.fields else f
                    for f in sorted(unique.fields)
                )
                if not written_by_data_step(ctx, ctx.key, ctx.before.db_table, [widened]):
                    yield self.finding(
                        ctx,
                        severity=Severity.INFO,
                        message=self.widened_message,
                        field=widened,
                        column=columns[0],
                        columns=", ".join(columns),
                        size="",
                    )
                    continue
            yield from self._over_existing(ctx, unique)

    def _added(
        self, ctx: OperationContext, name: str, field: models.Field[Any, Any]
    ) -> Iterable[Finding]:
        if field.many_to_many or not field.unique:
            return
        fill = existing_fill(field)
        if fill.fill in (Fill.NULL, Fill.DISTINCT):
            return
        column = column_of(name, field)
        assert ctx.before is not None
        small = few_rows(ctx.unit, ctx.before.db_table, 1)
        if fill.fill is Fill.CONSTANT:
            yield self.finding(
                ctx,
                severity=graded(Severity.ERROR, small),
                field=name,
                column=column,
                columns=column,
                value=fill.shown,
                size=size_note(small),
            )
        else:
            yield self._may(ctx, name, (column,), small)

    def _over_existing(self, ctx: OperationContext, unique: UniqueSet) -> Iterable[Finding]:
        assert ctx.before is not None
        if already_unique(ctx.before, unique.fields):
            return
        fields = sorted(unique.fields)
        columns = tuple(
            column_of(f, ctx.before.fields[f]) if f in ctx.before.fields else f for f in fields
        )
        small = few_rows(ctx.unit, ctx.before.db_table, 1)
        if unique.nulls_distinct and any(_null_in_existing_rows(ctx, f) for f in fields):
            return  # every existing row has NULL in the set: none of them collide
        if any(ctx.s0_field(f) is not None for f in fields):
            yield self._may(ctx, fields[0], columns, small, fields=fields)
            return
        # Every column is new in the unit: what the rows hold depends on how they were added.
        added = added_in_this_migration(ctx, fields)
        if added is None:
            yield self._may(ctx, fields[0], columns, small, fields=fields)
            return
        fills = [existing_fill(added[f]) for f in fields]
        if any(f.fill is Fill.DISTINCT for f in fills):
            return
        if unique.nulls_distinct and any(f.fill is Fill.NULL for f in fills):
            return
        if unique.exact and all(f.fill in (Fill.CONSTANT, Fill.NULL) for f in fills):
            shown = ", ".join(f.shown or "NULL" for f in fills)
            yield self.finding(
                ctx,
                severity=graded(Severity.ERROR, small),
                field=fields[0],
                column=", ".join(columns),
                columns=", ".join(columns),
                value=shown,
                size=size_note(small),
            )
            return
        yield self._may(ctx, fields[0], columns, small, fields=fields)

    def _may(
        self,
        ctx: OperationContext,
        field: str,
        columns: Sequence[str],
        small: int | None,
        *,
        key: ModelKey | None = None,
        fields: Sequence[str] = (),
        **names: Any,
    ) -> Finding:
        table = str(names.get("table") or (ctx.before.db_table if ctx.before else ""))
        prepared = written_by_data_step(
            ctx, key or ctx.key, table, fields or [field], opaque=False
        )
        return self.finding(
            ctx,
            severity=Severity.INFO if prepared else graded(Severity.WARNING, small),
            message=self.prepared_message if prepared else self.may_message,
            field=field,
            column=columns[0] if columns else "",
            columns=", ".join(columns),
            size=size_note(small),
            **names,
        )

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind not in _UNIQUE_SQL or not action.unique:
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None or ref.s0 is None:
                continue
            if action.concurrently and _states_uniqueness(ctx, ref.key):
                continue  # the deliberate recipe: backfilled and checked, then built online
            s0_names: list[str] = []
            for column in action.columns:
                s0 = ref.s0_field(ctx.unit, column)
                name = ref.field_of(column)
                if s0 is not None and name is not None:
                    s0_names.append(ctx.unit.lineage.s0_field_name(ref.key, name) or name)
            if action.columns and not s0_names:
                continue  # only columns new in the unit: their fill is not readable from SQL
            if (
                action.columns
                and len(s0_names) == len(action.columns)
                and already_unique(ref.s0, s0_names)
                and not action.has_where
            ):
                continue
            small = few_rows(ctx.unit, ref.now.db_table, 1)
            columns = action.columns or ("<expression>",)
            yield self._may(
                ctx,
                ref.field_of(columns[0]) or columns[0],
                columns,
                small,
                key=ref.key,
                fields=[c for c in columns if c != "<expression>"],
                table=ref.now.db_table,
                model=ref.now.name,
            )


def _states_uniqueness(ctx: OperationContext, key: tuple[str, str]) -> bool:
    """Return True when the RunSQL is the database side of a SeparateDatabaseAndState whose
    state side adds uniqueness to the same model: the documented recipe's last step."""
    if not ctx.nesting or ctx.nesting[0][0] != "database_operations":
        return False
    outer = ctx.migration.operations[ctx.index]
    if not isinstance(outer, migrations.SeparateDatabaseAndState):
        return False
    for op in outer.state_operations:
        if (ctx.app_label, getattr(op, "model_name_lower", "")) != key:
            continue
        if isinstance(op, migrations.AlterField) and op.field.unique:
            return True
        if isinstance(op, migrations.AddConstraint) and isinstance(
            op.constraint, models.UniqueConstraint
        ):
            return True
        if isinstance(op, migrations.AlterUniqueTogether):
            return True
    return False
