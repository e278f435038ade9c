"""Shared facts for the data rules: what existing rows hold, what is unique, what RunSQL does.

The data rules ask the same questions of every operation: which value does an added column
give the rows already there, which column sets are unique, which table and column of S0 a
RunSQL statement touches, and how many rows S0 reported. They are answered here once.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import migrations, models
from django.db.models.fields import AutoFieldMixin

from django_rollout.findings import Severity
from django_rollout.graph.context import OperationContext, Unit
from django_rollout.graph.model import (
    ModelKey,
    ModelView,
    column_name,
    db_default_fills,
    default_db_table,
)
from django_rollout.graph.runsql import _NOT_VOLATILE, _VOLATILE, SqlAction, parse_sql_safe


class Fill(enum.Enum):
    """What an added column holds in the rows that existed before it was added."""

    NULL = "null"  # NULL, or nothing at all (the ADD COLUMN fails on NOT NULL first)
    CONSTANT = "constant"  # one value, the same for every row
    DISTINCT = "distinct"  # a value per row (a sequence, a volatile database default)
    UNKNOWN = "unknown"  # a database expression we cannot classify


@dataclass(frozen=True)
class ExistingFill:
    fill: Fill
    shown: str = ""  # how the value reads in a message, e.g. "`''` from blank=True"


# Stable SQL functions (one value per statement) spelled as Django's expressions spell them.
_STABLE_EXTRA = frozenset({"current_timestamp", "localtimestamp", "current_time", "localtime"})


def _expression_fill(expression: Any) -> Fill:
    """Classify a ``db_default`` expression. If in doubt, return ``Fill.UNKNOWN``."""
    if not hasattr(expression, "resolve_expression") or isinstance(expression, models.Value):
        return Fill.CONSTANT
    verdict = Fill.CONSTANT
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, models.Value):
            continue
        if isinstance(node, models.Func):
            # Template-only functions spell their call in the template: "GEN_RANDOM_UUID()".
            name = str(node.function or node.template or "").lower().split("(")[0].strip()
            if name in _VOLATILE:
                return Fill.DISTINCT
            if name not in _NOT_VOLATILE and name not in _STABLE_EXTRA:
                verdict = Fill.UNKNOWN
        elif not isinstance(node, models.ExpressionWrapper):
            verdict = Fill.UNKNOWN
        stack.extend(e for e in node.get_source_expressions() if e is not None)
    return verdict


def existing_fill(field: models.Field[Any, Any]) -> ExistingFill:
    """Return what Django's ``add_field`` writes into the rows already in the table.

    This mirrors ``BaseDatabaseSchemaEditor._effective_default``: a Python default (even a
    callable, evaluated once), ``''`` for a NOT NULL ``blank=True`` text field, the current
    time for ``auto_now``; a ``db_default`` is evaluated by the database, per row only when
    it is volatile.
    """
    if isinstance(field, AutoFieldMixin):
        return ExistingFill(Fill.DISTINCT)
    db_default = getattr(field, "db_default", models.NOT_PROVIDED)
    if db_default is not models.NOT_PROVIDED:
        if not db_default_fills(field):
            return ExistingFill(Fill.NULL)  # db_default=None: DEFAULT NULL
        fill = _expression_fill(db_default)
        return ExistingFill(fill, f"`db_default={db_default!r}`")
    if getattr(field, "generated", False):
        return ExistingFill(Fill.UNKNOWN, "a generated expression")
    if field.has_default():
        default = field.default
        if default is None:
            return ExistingFill(Fill.NULL)
        if callable(default):
            name = getattr(default, "__qualname__", repr(default))
            module = getattr(default, "__module__", "")
            shown = f"{module}.{name}" if module and module != "builtins" else name
            return ExistingFill(Fill.CONSTANT, f"`default={shown}` (called once)")
        return ExistingFill(Fill.CONSTANT, f"`default={default!r}`")
    if not field.null and field.blank and field.empty_strings_allowed:
        return ExistingFill(Fill.CONSTANT, "`''` (Django's default for blank=True)")
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return ExistingFill(Fill.CONSTANT, "the migration's timestamp (auto_now)")
    return ExistingFill(Fill.NULL)


# -- uniqueness --------------------------------------------------------------------------


@dataclass(frozen=True)
class UniqueSet:
    """Field names under one unique constraint or index of a model."""

    fields: frozenset[str]
    exact: bool = True  # no condition and no expression: every row takes part
    nulls_distinct: bool = True


def expression_fields(expression: Any) -> set[str]:
    names: set[str] = set()
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            names.add(node.split("__")[0])
        elif isinstance(node, models.F):
            names.add(node.name.split("__")[0])
        elif isinstance(node, models.Q):
            for child in node.children:
                stack.append(child[0] if isinstance(child, tuple) else child)
                if isinstance(child, tuple):
                    stack.append(child[1])
        elif hasattr(node, "get_source_expressions"):
            stack.extend(e for e in node.get_source_expressions() if e is not None)
    return names


def constraint_set(constraint: models.UniqueConstraint) -> UniqueSet:
    fields = set(constraint.fields)
    for expression in constraint.expressions:
        fields |= expression_fields(expression)
    exact = not constraint.expressions and constraint.condition is None
    nulls_distinct = constraint.nulls_distinct is not False
    return UniqueSet(frozenset(fields), exact, nulls_distinct)


def unique_sets(model: ModelView | None) -> list[UniqueSet]:
    """Return every set of fields the model keeps unique (fields, together, constraints)."""
    if model is None:
        return []
    sets = [UniqueSet(frozenset({name})) for name, field in model.fields.items() if field.unique]
    for together in model.options.get("unique_together") or ():
        sets.append(UniqueSet(frozenset(together)))
    for constraint in model.options.get("constraints") or ():
        if isinstance(constraint, models.UniqueConstraint):
            sets.append(constraint_set(constraint))
    return sets


def unique_shown(model: ModelView, name: str) -> str:
    """How a message names the uniqueness of field ``name``: ``unique`` when it is unique on
    its own, else the smallest key it takes part in."""
    sets = [s for s in unique_sets(model) if name in s.fields]
    if not sets or any(s.fields == {name} for s in sets):
        return "unique"
    key = min(sets, key=lambda s: (len(s.fields), sorted(s.fields)))
    names = [name, *sorted(key.fields - {name})]
    columns = ", ".join(
        f"`{column_of(n, model.fields[n]) if n in model.fields else n}`" for n in names
    )
    return f"part of the unique key ({columns})"


def already_unique(model: ModelView | None, fields: Iterable[str]) -> bool:
    """Return True when some exact unique set of ``model`` lies within ``fields``."""
    wanted = frozenset(fields)
    return any(s.exact and s.nulls_distinct and s.fields <= wanted for s in unique_sets(model))


def unique_fields(model: ModelView | None) -> set[str]:
    """Return the fields that take part in any unique constraint or index of the model."""
    return {name for s in unique_sets(model) for name in s.fields}


# -- database types ------------------------------------------------------------------------


def _bound(field: models.Field[Any, Any], name: str) -> models.Field[Any, Any]:
    # State fields are not attached to a model: give a copy its name and column so the
    # type and check templates (which read ``column``) can be filled. The column is the
    # field name, so that two versions of a field compare equal across a db_column change.
    clone = field.clone()
    clone.db_column = None
    clone.set_attributes_from_name(name)
    return clone


def db_type(field: models.Field[Any, Any], name: str, unit: Unit) -> str | None:
    """Return the column type Django emits for ``field``, or None when it cannot tell."""
    if field.is_relation or field.many_to_many:
        return None
    connection = unit.connection
    if connection is None:
        return None
    try:
        result = _bound(field, name).db_type(connection)
    except Exception:  # noqa: BLE001 - third-party fields may need a live connection
        return None
    return None if result is None else str(result)


def casts_explicitly(
    old: models.Field[Any, Any], new: models.Field[Any, Any], name: str, unit: Unit
) -> bool:
    """Return True when Django's PostgreSQL ``AlterField`` converts with ``USING col::type``.

    It does when the two fields' data types differ (``TextField`` to ``CharField``, even
    ``CharField`` to ``SlugField``). That cast is explicit, and an explicit cast to
    ``varchar(n)`` cuts longer values where an assignment fails with ``value too long``.
    """
    connection = unit.connection
    if connection is None or connection.vendor != "postgresql":
        return False
    using = getattr(connection.schema_editor(collect_sql=True), "_using_sql", None)
    if using is None:
        return False
    try:
        return bool(using(_bound(new, name), _bound(old, name)))
    except Exception:  # noqa: BLE001 - third-party fields may need a live connection
        return False


def db_check(field: models.Field[Any, Any], name: str, unit: Unit) -> str | None:
    """Return the CHECK Django puts on the column of ``field`` (PositiveIntegerField ...)."""
    if field.is_relation or field.many_to_many:
        return None
    connection = unit.connection
    if connection is None:
        return None
    try:
        check = _bound(field, name).db_parameters(connection).get("check")
    except Exception:  # noqa: BLE001 - third-party fields may need a live connection
        return None
    return str(check) if check else None


# -- row counts ------------------------------------------------------------------------------


def few_rows(unit: Unit, db_table: str, most: int) -> int | None:
    """Return the S0 row count of ``db_table`` when S0 counted it at ``most`` rows or fewer."""
    count = unit.rows(db_table)
    return count if count is not None and count <= most else None


def graded(severity: Severity, small: int | None) -> Severity:
    """Downgrade to info when S0's row count shows the data cannot break the statement."""
    return Severity.INFO if small is not None else severity


def size_note(small: int | None) -> str:
    return "" if small is None else f" (S0 counted {small} row{'s' if small != 1 else ''})"


# -- RunSQL ------------------------------------------------------------------------------------

_PARSED: weakref.WeakKeyDictionary[Any, tuple[SqlAction, ...]] = weakref.WeakKeyDictionary()


def runsql_actions(ctx: OperationContext) -> tuple[SqlAction, ...]:
    """Return the forward actions of the operation when it is a RunSQL that reaches the
    database (cached per operation object)."""
    if not ctx.database:
        return ()
    return sql_actions(ctx.operation, ctx.unit.vendor)


def sql_actions(operation: Any, vendor: str) -> tuple[SqlAction, ...]:
    """Return the forward actions of a RunSQL operation, () for anything else."""
    if not isinstance(operation, migrations.RunSQL):
        return ()
    try:
        return _PARSED[operation]
    except KeyError:
        pass
    sql = operation.sql
    if sql == migrations.RunSQL.noop or not sql:
        actions: tuple[SqlAction, ...] = ()
    else:
        # Unparseable SQL is reported by the rules that own parse errors, not here.
        actions, _ = parse_sql_safe(sql, vendor)
    _PARSED[operation] = actions
    return actions


@dataclass(frozen=True)
class TableRef:
    """A table named in SQL, resolved to the model that owns it now and to its S0 view."""

    key: ModelKey
    now: ModelView
    s0: ModelView | None

    def field_of(self, column: str) -> str | None:
        found = self.now.field_for_column(column)
        return found[0] if found is not None else None

    def s0_field(self, unit: Unit, column: str) -> models.Field[Any, Any] | None:
        """Return the S0 field whose column is ``column`` now (renames followed), or None."""
        name = self.field_of(column)
        if name is None or self.s0 is None:
            return None
        s0_name = unit.lineage.s0_field_name(self.key, name)
        return None if s0_name is None else self.s0.fields.get(s0_name)


def table_ref(unit: Unit, table: str | None) -> TableRef | None:
    """Return the model owning ``table`` whose table existed in S0, or None."""
    if not table:
        return None
    for key, state in unit.state.models.items():
        db_table = state.options.get("db_table") or default_db_table(key[0], state.name)
        if str(db_table).lower() != table.lower():
            continue
        if not unit.in_s0(key):
            return None
        now = ModelView.of(state)
        if not now.has_table:
            continue
        return TableRef(key, now, unit.lineage.s0_model(key))
    return None


# -- the judged migration --------------------------------------------------------------------


def earlier_operations(ctx: OperationContext) -> Sequence[Any]:
    """Return the top-level operations of the judged migration that run before this one."""
    return list(ctx.migration.operations[: ctx.index])


def walk_operations(operations: Iterable[Any]) -> Iterator[Any]:
    """Yield operations, descending into SeparateDatabaseAndState's database side."""
    for op in operations:
        if isinstance(op, migrations.SeparateDatabaseAndState):
            yield from walk_operations(op.database_operations)
        else:
            yield op


def column_of(name: str, field: models.Field[Any, Any]) -> str:
    return column_name(name, field) or name


def written_earlier(
    ctx: OperationContext, key: ModelKey | None, table: str, column: str | None = None
) -> bool:
    """Return True when an earlier operation of the judged migration may have written the
    table (a backfill): a RunPython that looks the model up, or whose source cannot be read,
    or a RunSQL UPDATE of the table (of ``column`` when given)."""
    from django_rollout.rules.data._runpython import forward_facts
    from django_rollout.vendors.base import StatementKind

    for op in walk_operations(earlier_operations(ctx)):
        if isinstance(op, migrations.RunPython):
            facts = forward_facts(op, ctx.app_label)
            if facts is None or (key is not None and key in facts.touched):
                return True
        for action in sql_actions(op, ctx.unit.vendor):
            if (
                action.kind is StatementKind.UPDATE
                and (action.table or "") == table.lower()
                and (column is None or column.lower() in action.columns)
            ):
                return True
    return False


def emptied_earlier(ctx: OperationContext, key: ModelKey | None, table: str) -> bool:
    """Return True when an earlier operation of the judged migration deletes every row of
    the table: a RunPython ``Model.objects.all().delete()``, a RunSQL ``DELETE`` without
    ``WHERE`` or a ``TRUNCATE``."""
    from django_rollout.rules.data._runpython import forward_facts
    from django_rollout.vendors.base import StatementKind

    for op in walk_operations(earlier_operations(ctx)):
        if isinstance(op, migrations.RunPython):
            facts = forward_facts(op, ctx.app_label)
            if facts is not None and key is not None and key in facts.emptied:
                return True
        for action in sql_actions(op, ctx.unit.vendor):
            if (action.table or "") != table.lower():
                continue
            if action.kind is StatementKind.TRUNCATE or (
                action.kind is StatementKind.DELETE and not action.has_where
            ):
                return True
    return False


def written_by_data_step(
    ctx: OperationContext,
    key: ModelKey | None,
    table: str,
    fields: Iterable[str],
    *,
    opaque: bool = True,
) -> bool:
    """Return True when a data step walked before this operation (``unit.history``: deployed
    migrations, earlier migrations of the unit, earlier operations of this one) writes one of
    ``fields`` (field names or columns of ``key`` as the model stands now) into existing rows:
    a RunPython ``update(field=...)``, ``obj.field = ...`` then ``save()``/``bulk_update``, or
    a RunSQL ``UPDATE`` of the column. With ``opaque``, a RunPython that hands the model or its
    rows to code it does not show (a helper function, ``update(**values)``) counts too.

    A step whose source cannot be read is not counted: this is evidence of a backfill, and
    an unreadable function is none.
    """
    from django_rollout.rules.data._runpython import ANY_FIELD, forward_facts
    from django_rollout.vendors.base import StatementKind

    unit = ctx.unit
    keys = {k for k in (key, unit.lineage.origin(key) if key else None) if k is not None}
    tables = {table.lower()}
    names: set[str] = set()
    model = unit.model_now(key) if key is not None else None
    s0 = unit.lineage.s0_model(key) if key is not None else None
    if s0 is not None and s0.has_table:
        tables.add(s0.db_table.lower())
    for name in fields:
        names.add(name)
        field = model.fields.get(name) if model is not None else None
        if field is not None:
            names.add(column_of(name, field))
        if key is not None and (s0_name := unit.lineage.s0_field_name(key, name)):
            names.add(s0_name)
            s0_field = s0.fields.get(s0_name) if s0 is not None else None
            if s0_field is not None:
                names.add(column_of(s0_name, s0_field))
    lowered = {n.lower() for n in names}
    for step in unit.history:
        operation = step.operation
        if isinstance(operation, migrations.RunPython):
            facts = forward_facts(operation, step.app_label)
            if facts is None:
                continue
            for written_key, written in facts.written.items():
                if written_key not in keys:
                    continue
                if (opaque and ANY_FIELD in written) or written & names:
                    return True
        for action in sql_actions(operation, unit.vendor):
            if (
                action.kind is StatementKind.UPDATE
                and (action.table or "").lower() in tables
                and {c.lower() for c in action.columns} & lowered
            ):
                return True
    return False


def touched_in_unit(ctx: OperationContext, key: ModelKey | None, table: str) -> bool:
    """Return True when a data step of the unit walked before this operation (not deployed)
    may have written the table: a RunPython that looks the model up or cannot be read, a
    RunSQL UPDATE of the table."""
    from django_rollout.rules.data._runpython import forward_facts
    from django_rollout.vendors.base import StatementKind

    for step in ctx.unit.history:
        if step.deployed:
            continue
        if isinstance(step.operation, migrations.RunPython):
            facts = forward_facts(step.operation, step.app_label)
            if facts is None or (key is not None and key in facts.touched):
                return True
        for action in sql_actions(step.operation, ctx.unit.vendor):
            if action.kind is StatementKind.UPDATE and (action.table or "") == table.lower():
                return True
    return False


def added_in_this_migration(
    ctx: OperationContext, fields: Sequence[str]
) -> dict[str, models.Field[Any, Any]] | None:
    """Return the fields as this migration added them, when no data operation ran since.

    Only then do the rows still hold what ``AddField`` wrote; a RunPython or RunSQL in
    between (or an AddField in an earlier migration) may have backfilled them.
    """
    model = getattr(ctx.operation, "model_name_lower", None)
    found: dict[str, models.Field[Any, Any]] = {}
    for op in earlier_operations(ctx):
        if isinstance(op, migrations.AddField) and op.model_name_lower == model:
            if op.name in fields:
                found[op.name] = op.field
        elif isinstance(op, migrations.RunPython | migrations.RunSQL) and found:
            found.clear()
        elif isinstance(op, migrations.SeparateDatabaseAndState):
            return None
    return found if set(found) == set(fields) else None


# -- SQL details the statement facts do not carry ------------------------------------------


def _statement(sql: str, kind: type[Any]) -> Any | None:
    import pglast

    try:
        for raw in pglast.parse_sql(sql):
            if isinstance(raw.stmt, kind):
                return raw.stmt
    except pglast.parser.ParseError:
        return None
    return None


def insert_handles_conflicts(sql: str) -> bool:
    """Return True for an INSERT with ON CONFLICT, or one guarded by ``WHERE NOT EXISTS``.

    If the statement cannot be read, return True: a rule never guesses a hazard.
    """
    from pglast import ast as pg

    stmt = _statement(sql, pg.InsertStmt)
    if stmt is None or stmt.onConflictClause is not None:
        return True
    select = stmt.selectStmt
    where = getattr(select, "whereClause", None)
    return where is not None and any(isinstance(n, pg.SubLink) for n in _pg_walk(where))


def update_rewrites(sql: str) -> tuple[str, ...]:
    """Return the columns an UPDATE sets to a value computed from the row (``lower(col)``)."""
    from pglast import ast as pg

    stmt = _statement(sql, pg.UpdateStmt)
    if stmt is None:
        return ()
    columns: list[str] = []
    for target in stmt.targetList or ():
        name = (target.name or "").lower()
        value = target.val
        if isinstance(value, pg.ColumnRef):
            parts = value.fields or ()
            fields = [(f.sval or "").lower() for f in parts if isinstance(f, pg.String)]
            if fields[-1:] == [name]:
                continue  # SET col = col
        if any(isinstance(n, pg.ColumnRef) for n in _pg_walk(value)):
            columns.append(name)
    return tuple(columns)


def _pg_walk(node: Any) -> Iterator[Any]:
    from pglast import ast as pg

    if isinstance(node, pg.Node):
        yield node
        for attr in node:
            yield from _pg_walk(getattr(node, attr))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _pg_walk(item)
