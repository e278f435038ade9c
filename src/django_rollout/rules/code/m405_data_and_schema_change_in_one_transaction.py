"""M405: rows written and the same table altered in one atomic migration."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import migrations
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

from django_rollout.findings import Finding, Severity
from django_rollout.graph.code import get_model_key, string_constant
from django_rollout.graph.context import OperationContext, same_target_table
from django_rollout.graph.model import ModelKey, ModelView, column_name, related_key, view
from django_rollout.graph.runsql import SqlAction, parse_sql_safe
from django_rollout.graph.source import function_source
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._columns import comment_altered, db_differs
from django_rollout.vendors.base import StatementKind

K = StatementKind
Position = tuple[Any, ...]

_INSERTS = frozenset({"create", "bulk_create", "get_or_create", "update_or_create"})
# Statements that do not check the table for pending trigger events (verified on PostgreSQL).
_NOT_CHECKED = frozenset(
    {
        K.INSERT,
        K.UPDATE,
        K.DELETE,
        K.RENAME_TABLE,
        K.RENAME_COLUMN,
        K.RENAME_INDEX,
        K.RENAME_CONSTRAINT,
        K.DROP_INDEX,
        K.DROP_INDEX_CONCURRENTLY,
        K.SET_LOCK_TIMEOUT,
        K.SET_STATEMENT_TIMEOUT,
        K.CREATE_TABLE,
        K.OTHER,
    }
)
# Django operations whose SQL is an ALTER TABLE, CREATE INDEX or DROP TABLE on their table.
_ALTERING = (
    migrations.AddField,
    migrations.RemoveField,
    migrations.AddIndex,
    migrations.AddConstraint,
    migrations.RemoveConstraint,
    migrations.AlterUniqueTogether,
    migrations.AlterIndexTogether,
    migrations.AlterOrderWithRespectTo,
    migrations.DeleteModel,
)


@dataclass(frozen=True)
class Write:
    """Rows a data step writes: ``kind`` is insert, update or delete."""

    kind: str
    model: ModelKey | None = None
    table: str | None = None
    columns: tuple[str, ...] | None = None  # None: not known
    line: int | None = None


# -- what a data step writes ---------------------------------------------------------------


def _root(node: ast.expr) -> ast.Name | None:
    while True:
        if isinstance(node, ast.Name):
            return node
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return None


def _strings(node: ast.expr | None) -> tuple[str, ...] | None:
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        values = [string_constant(e) for e in node.elts]
        if all(v is not None for v in values):
            return tuple(v for v in values if v is not None)
    return None


def _python_writes(tree: ast.AST, first_line: int) -> list[Write]:
    models: dict[str, ModelKey] = {}
    instances: dict[str, tuple[str, ModelKey]] = {}  # name -> ("new"|"row", model)
    assigned: dict[str, set[str]] = {}

    def model_of(node: ast.expr) -> ModelKey | None:
        root = _root(node)
        return models.get(root.id) if root is not None else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            key = get_model_key(node.value)
            for target in node.targets:
                if isinstance(target, ast.Name) and key is not None:
                    models[target.id] = key
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    assigned.setdefault(target.value.id, set()).add(target.attr)
    for node in ast.walk(tree):
        value: ast.expr | None = None
        names: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            value, names = node.value, list(node.targets)
        elif isinstance(node, ast.For):
            value, names = node.iter, [node.target]
        if value is None:
            continue
        key = model_of(value)
        if key is None:
            continue
        new = isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
        for target in names:
            if isinstance(target, ast.Tuple) and target.elts:
                target = target.elts[0]  # obj, created = M.objects.get_or_create(...)
            if isinstance(target, ast.Name) and target.id not in models:
                instances[target.id] = ("new" if new else "row", key)

    writes: list[Write] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method = node.func.attr
        line = first_line + node.lineno - 1
        root = _root(node.func.value)
        if root is None:
            continue
        key = models.get(root.id)
        instance = instances.get(root.id)
        if key is not None:
            if method in _INSERTS:
                writes.append(Write("insert", key, line=line))
            elif method == "update":
                double_star = any(k.arg is None for k in node.keywords)
                columns = None if double_star else tuple(k.arg for k in node.keywords if k.arg)
                writes.append(Write("update", key, columns=columns, line=line))
            elif method == "bulk_update":
                fields = next((k.value for k in node.keywords if k.arg == "fields"), None)
                if fields is None and len(node.args) > 1:
                    fields = node.args[1]
                writes.append(Write("update", key, columns=_strings(fields), line=line))
            elif method == "delete":
                writes.append(Write("delete", key, line=line))
            elif method == "save" and isinstance(node.func.value, ast.Call):
                writes.append(Write("insert", key, line=line))  # M(...).save()
        elif instance is not None:
            kind, key = instance
            if method == "delete":
                writes.append(Write("delete", key, line=line))
            elif method == "save" and kind == "new":
                writes.append(Write("insert", key, line=line))
            elif method == "save":
                given = next((k.value for k in node.keywords if k.arg == "update_fields"), None)
                columns = _strings(given) if given is not None else None
                if columns is None:
                    # save() writes every column, but a foreign key only changes when the
                    # code assigns it: unchanged keys queue no trigger event.
                    columns = tuple(sorted(assigned.get(root.id, set())))
                writes.append(Write("update", key, columns=columns, line=line))
    return writes


@lru_cache(maxsize=512)
def _function_writes(func: Callable[..., Any]) -> tuple[Write, ...]:
    tree, _path, first = function_source(func)
    if tree is None:
        return ()
    return tuple(_python_writes(tree, first or 1))


def _sql_writes(actions: Sequence[SqlAction]) -> list[Write]:
    kinds = {K.INSERT: "insert", K.UPDATE: "update", K.DELETE: "delete"}
    return [
        Write(kinds[a.kind], table=a.table, columns=a.columns or None)
        for a in actions
        if a.kind in kinds and a.table
    ]


def _sets_constraints_immediate(sql: Any) -> bool:
    """Return True when RunSQL holds ``SET CONSTRAINTS ... IMMEDIATE`` (it fires pending
    trigger events, so later ALTERs succeed)."""
    import pglast  # imported on first use: slow to import, most runs parse no SQL
    from pglast import ast as pg

    texts = [sql] if isinstance(sql, str) else [s if isinstance(s, str) else s[0] for s in sql]
    for text in texts:
        try:
            stmts = pglast.parse_sql(text)
        except Exception:  # noqa: BLE001 - unparsable SQL is judged elsewhere
            continue
        for raw in stmts:
            if isinstance(raw.stmt, pg.ConstraintsSetStmt) and not raw.stmt.deferred:
                return True
    return False


# -- the migration's database operations, in the order they run ----------------------------


def _flatten(op: Operation, pos: Position, out: list[tuple[Position, Operation]]) -> None:
    if isinstance(op, migrations.SeparateDatabaseAndState):
        for j, inner in enumerate(op.database_operations):
            _flatten(inner, (*pos, "database_operations", j), out)
    else:
        out.append((pos, op))


def database_operations(migration: migrations.Migration) -> list[tuple[Position, Operation]]:
    out: list[tuple[Position, Operation]] = []
    for i, op in enumerate(migration.operations):
        _flatten(op, (i,), out)
    return out


def _position(ctx: OperationContext) -> Position:
    pos: list[Any] = [ctx.index]
    for name, i in ctx.nesting:
        pos += [name, i]
    return tuple(pos)


def _model_key(op: Operation, app_label: str) -> ModelKey | None:
    name = getattr(op, "model_name_lower", None) or getattr(op, "name_lower", None)
    return (app_label, name) if name else None


def _alter_field_checks(
    op: migrations.AlterField, app_label: str, target: ModelView, state: ProjectState
) -> bool:
    """Whether Django's SQL for ``op`` includes a statement PostgreSQL checks for pending
    trigger events. A new column name alone is a RENAME, which it does not check, unless
    the field is a foreign key: Django then drops its constraint and adds it back (see
    :func:`_fired`). A new comment comes with Django's ``ALTER COLUMN ... TYPE`` of the
    same type, which it does check."""
    old = target.fields.get(op.name)
    if old is None:
        return True
    same = same_target_table(state, app_label, target, old, op.field)
    if db_differs(old, op.field, op.name, same, renames=False):
        return True
    if column_name(op.name, old) != column_name(op.name, op.field):
        return _constrained_fk(old)
    return comment_altered(old, op.field)


def _fired(
    op: Operation, app_label: str, target: ModelView, state: ProjectState
) -> frozenset[tuple[ModelKey, str]]:
    """The foreign keys of ``target`` whose queued checks ``op``'s own SQL runs first: Django
    drops a foreign key constraint it alters or removes with ``SET CONSTRAINTS ...
    IMMEDIATE; ALTER TABLE ... DROP CONSTRAINT``, which leaves nothing of it pending."""
    if not isinstance(op, migrations.AlterField | migrations.RemoveField):
        return frozenset()
    if _model_key(op, app_label) != target.key:
        return frozenset()
    old = target.fields.get(op.name)
    if old is None or not _constrained_fk(old):
        return frozenset()
    if isinstance(op, migrations.AlterField):
        same = same_target_table(state, app_label, target, old, op.field)
        if not db_differs(old, op.field, op.name, same):
            return frozenset()
    return frozenset({(target.key, op.name)})


def _alters(op: Operation, app_label: str, target: ModelView, state: ProjectState) -> bool:
    """Return True when ``op`` runs a statement on ``target``'s table that PostgreSQL refuses
    while the table has pending trigger events."""
    if isinstance(op, migrations.RunSQL):
        actions, _ = parse_sql_safe(op.sql)
        return any(a.table == target.db_table and a.kind not in _NOT_CHECKED for a in actions)
    if _model_key(op, app_label) != target.key:
        return False
    if isinstance(op, migrations.AlterField):
        return _alter_field_checks(op, app_label, target, state)
    return isinstance(op, _ALTERING)


def _writes(op: Operation) -> list[Write]:
    if isinstance(op, migrations.RunPython):
        return list(_function_writes(op.code))
    if isinstance(op, migrations.RunSQL):
        actions, _ = parse_sql_safe(op.sql)
        return _sql_writes(actions)
    return []


# -- which writes leave trigger events pending on the table --------------------------------


def _constrained_fk(field: Any) -> bool:
    return (
        getattr(field, "remote_field", None) is not None
        and not field.many_to_many
        and getattr(field, "db_constraint", True)
        and getattr(field, "concrete", True)
    )


def _deferred_fields(
    ops: Sequence[tuple[Position, Operation]], app_label: str, after: Position
) -> set[tuple[ModelKey, str]]:
    """Foreign keys whose constraint does not exist yet when the data step runs: those of a
    CreateModel of this migration (Django adds them at its end) and those added later."""
    out: set[tuple[ModelKey, str]] = set()
    for pos, op in ops:
        if isinstance(op, migrations.CreateModel):
            out.update(((app_label, op.name_lower), name) for name, _ in op.fields)
        elif isinstance(op, migrations.AddField) and pos > after:
            out.add(((app_label, op.model_name_lower), op.name))
    return out


def _points_to(field: Any, app_label: str, owner: ModelKey, target: ModelKey) -> bool:
    remote = getattr(field.remote_field, "model", None)
    if remote == "self":
        return owner == target
    return related_key(field, app_label) == target


def _pending_reason(
    write: Write,
    target: ModelView,
    ctx: OperationContext,
    deferred: set[tuple[ModelKey, str]],
) -> tuple[str, str] | None:
    """Return how ``write`` leaves trigger events pending on ``target``, or None."""
    own_fks = {
        name: field
        for name, field in target.fields.items()
        if _constrained_fk(field) and (target.key, name) not in deferred
    }
    if write.kind == "insert" and own_fks:
        return "inserts rows into", f"foreign key `{next(iter(own_fks))}`"
    if write.kind == "update":
        if write.columns is None and own_fks:
            return "updates rows of", "its foreign keys may change"
        names = {n.lower() for n in write.columns or ()}
        for name, field in own_fks.items():
            if {name.lower(), f"{name}_id".lower(), (field.db_column or "").lower()} & names:
                return "re-points rows of", f"foreign key `{name}` changes"
    if write.kind == "delete":
        for key, state in ctx.unit.state.models.items():
            for name, field in state.fields.items():
                if (
                    _constrained_fk(field)
                    and (key, name) not in deferred
                    and _points_to(field, key[0], key, target.key)
                ):
                    return "deletes rows from", f"referenced by `{state.name}.{name}`"
    return None


def _targets(ctx: OperationContext) -> Iterator[ModelView]:
    op = ctx.operation
    if isinstance(op, migrations.RunSQL):
        actions, _ = parse_sql_safe(op.sql)
        tables = {a.table for a in actions if a.table and a.kind not in _NOT_CHECKED}
        for key in ctx.unit.state.models:
            model = view(ctx.unit.state, key)
            if model is not None and model.db_table in tables:
                yield model
    elif ctx.before is not None and ctx.before.has_table:
        yield ctx.before


class DataAndSchemaChangeInOneTransaction(Rule):
    """Rows written and the same table altered in one atomic migration.

    What it does
    ------------
    Flags an atomic migration in which a data step (``RunPython`` calling ``create``,
    ``bulk_create``, ``save`` of a new object, ``update`` of a foreign key, ``delete``; or
    ``RunSQL`` with ``INSERT``/``UPDATE``/``DELETE``) leaves foreign-key trigger events pending
    on a table, and a later operation of the same migration alters that table
    (``AddField``, ``AlterField`` that changes the column, ``RemoveField``, ``AddIndex``,
    ``AddConstraint``, ``DeleteModel``, ``ALTER TABLE`` in ``RunSQL`` ...). Events are pending
    on a table after rows are inserted into it or its foreign keys change, when it has a
    foreign key constraint, and after rows are deleted from it when a constraint points at it.
    Stays silent when the migration is not atomic, when the alteration comes first, when the
    data step writes another table, when no constraint is involved (``db_constraint=False``,
    or a foreign key created by a ``CreateModel`` of the same migration: Django adds those
    constraints at its end), for renames (PostgreSQL does not check them; a new ``db_column``
    alone is one), for an ``AlterField`` or ``RemoveField`` of the only foreign key with
    checks pending (Django drops that constraint with ``SET CONSTRAINTS ... IMMEDIATE``
    first), for a relation moved to a model on the same table (no SQL), and after a
    ``RunSQL("SET CONSTRAINTS ALL IMMEDIATE")``. A new ``db_comment`` counts: Django sends it
    with an ``ALTER COLUMN ... TYPE`` of the same type.

    Why it breaks production
    ------------------------
    Django creates foreign keys ``DEFERRABLE INITIALLY DEFERRED``: their checks are queued until
    the transaction commits. PostgreSQL refuses to alter a table with queued checks:
    ``ObjectInUse: cannot ALTER TABLE "shop_orderline" because it has pending trigger events``
    (``cannot CREATE INDEX ...``, ``cannot DROP TABLE ...``). The migration rolls back; it works
    on an empty development database and fails on production, where the data step finds rows.

    Example
    -------
    ```python
    def add_lines(apps, schema_editor):
        Order = apps.get_model("shop", "Order")
        OrderLine = apps.get_model("shop", "OrderLine")
        for order in Order.objects.filter(lines__isnull=True):
            OrderLine.objects.create(order=order, quantity=1)

    before = [
        migrations.CreateModel("Order", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel("OrderLine", [
            ("id", models.BigAutoField(primary_key=True)),
            ("order", models.ForeignKey("shop.Order", models.CASCADE, related_name="lines")),
            ("quantity", models.IntegerField()),
        ]),
    ]
    operations = [
        migrations.RunPython(add_lines, migrations.RunPython.noop),
        migrations.AddField("orderline", "note", models.TextField(null=True)),
    ]
    ```

    Use instead
    -----------
    ```python
    def add_lines(apps, schema_editor):
        Order = apps.get_model("shop", "Order")
        OrderLine = apps.get_model("shop", "OrderLine")
        for order in Order.objects.filter(lines__isnull=True):
            OrderLine.objects.create(order=order, quantity=1)

    before = [
        migrations.CreateModel("Order", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel("OrderLine", [
            ("id", models.BigAutoField(primary_key=True)),
            ("order", models.ForeignKey("shop.Order", models.CASCADE, related_name="lines")),
            ("quantity", models.IntegerField()),
        ]),
    ]
    operations = [
        migrations.AddField("orderline", "note", models.TextField(null=True)),
        migrations.RunPython(add_lines, migrations.RunPython.noop),
    ]
    ```
    """

    id = "M405"
    sqlstates = ("55",)
    name = "data-and-schema-change-in-one-transaction"
    severity = Severity.ERROR
    message = (
        "operation #{data_index} {verb} `{table}` ({why}) and this operation then alters it in"
        ' the same transaction: PostgreSQL refuses with `cannot ALTER TABLE "{table}" because'
        " it has pending trigger events`"
    )
    help = "Alter `{table}` before the data step, or move the data step into its own migration"
    recipe_steps = (
        "Move operation #{data_index} (the data step) out of `{migration}` into a migration of"
        " its own; every migration commits separately, which fires the queued foreign key"
        " checks.",
        "Or reorder `{migration}` so that the schema change on `{table}` runs before the data"
        " step.",
        'Or, if they must stay together, add `migrations.RunSQL("SET CONSTRAINTS ALL'
        ' IMMEDIATE", migrations.RunSQL.noop)` right after the data step.',
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database or not ctx.atomic or ctx.unit.vendor != "postgresql":
            return
        if isinstance(ctx.operation, migrations.RunPython | migrations.SeparateDatabaseAndState):
            return
        here = _position(ctx)
        ops = database_operations(ctx.migration)
        earlier = [(pos, op) for pos, op in ops if pos < here]
        if not any(isinstance(op, migrations.RunPython | migrations.RunSQL) for _, op in earlier):
            return
        for target in _targets(ctx):
            if not _alters(ctx.operation, ctx.app_label, target, ctx.unit.state):
                continue
            fired = _fired(ctx.operation, ctx.app_label, target, ctx.unit.state)
            found = self._pending(ctx, target, earlier, ops, fired)
            if found is not None:
                data_index, (verb, why), line = found
                yield self.finding(
                    ctx,
                    table=target.db_table,
                    model=target.name,
                    verb=verb,
                    why=why,
                    data_index=data_index,
                    details={"data_step_line": line} if line else None,
                )

    def _pending(
        self,
        ctx: OperationContext,
        target: ModelView,
        earlier: Sequence[tuple[Position, Operation]],
        ops: Sequence[tuple[Position, Operation]],
        fired: frozenset[tuple[ModelKey, str]],
    ) -> tuple[int, tuple[str, str], int | None] | None:
        pending: tuple[int, tuple[str, str], int | None] | None = None
        for pos, op in earlier:
            if pending is not None:
                if isinstance(op, migrations.RunSQL) and _sets_constraints_immediate(op.sql):
                    pending = None
                elif _alters(op, ctx.app_label, target, ctx.unit.state):
                    return None  # that earlier alteration fails first, and is reported there
            for write in _writes(op):
                if write.model != target.key and write.table != target.db_table:
                    continue
                deferred = _deferred_fields(ops, ctx.app_label, pos)
                reason = _pending_reason(write, target, ctx, deferred | fired)
                if reason is not None and pending is None:
                    pending = (int(pos[0]), reason, write.line)
        return pending
