"""L304: SET NOT NULL on a table in S0: a full scan under ACCESS EXCLUSIVE."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import single_lookup
from django_rollout.graph.runsql import parse_sql_safe
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    K,
    details,
    grade,
    locks_for,
    mode_name,
    size_text,
    supports,
    table_model,
)


def _flat(operations: Iterable[Operation]) -> Iterator[Operation]:
    """Yield operations with SeparateDatabaseAndState's database operations spliced in."""
    for op in operations:
        if isinstance(op, migrations.SeparateDatabaseAndState):
            yield from _flat(op.database_operations)
        else:
            yield op


def _is_not_null_check(expression: str | None, column: str) -> bool:
    text = re.sub(r'[\s"()]', "", (expression or "").lower())
    return text == f"{column.lower()}isnotnull"


def _q_not_null(condition: object, fields: Sequence[str]) -> bool:
    found = single_lookup(condition)
    if found is None:
        return False
    name, lookup, value = found
    return lookup == "isnull" and value is False and name in fields


class _Proofs:
    """Follow the CHECK (col IS NOT NULL) constraints raw SQL adds, validates and drops."""

    def __init__(self, vendor: str, table: str, column: str) -> None:
        self.vendor, self.table, self.column = vendor, table, column
        self.valid: dict[str, bool] = {}

    def feed(self, operations: Iterable[Operation], stop_at_sql: str | None = None) -> None:
        for op in _flat(operations):
            if not isinstance(op, migrations.RunSQL):
                continue
            actions, error = parse_sql_safe(op.sql, self.vendor)
            for action in actions:
                if stop_at_sql is not None and action.sql == stop_at_sql:
                    return
                if action.table != self.table or action.constraint_name is None:
                    continue
                name = action.constraint_name
                if action.kind in (K.ADD_CHECK, K.ADD_CHECK_NOT_VALID):
                    if _is_not_null_check(action.value, self.column):
                        self.valid[name] = action.kind is K.ADD_CHECK
                elif action.kind is K.ADD_NOT_NULL_NOT_VALID and self.column in action.columns:
                    self.valid[name] = False
                elif action.kind is K.VALIDATE_CONSTRAINT and name in self.valid:
                    self.valid[name] = True
                elif action.kind is K.DROP_CONSTRAINT:
                    self.valid.pop(name, None)

    @property
    def proven(self) -> bool:
        return any(self.valid.values())


def _earlier_sql(ctx: OperationContext) -> list[Operation]:
    """Return the RunSQL operations walked before this migration, in plan order.

    A constraint added by raw SQL in an earlier migration (deployed or in the unit, of any
    app) is there; the walk keeps them in ``unit.history``.
    """
    current = (ctx.app_label, ctx.migration.name)
    return [
        step.operation
        for step in ctx.unit.history
        if isinstance(step.operation, migrations.RunSQL)
        and (step.app_label, step.migration) != current
    ]


def proven_not_null(ctx: OperationContext, table: str, column: str, sql: str | None) -> bool:
    """Return True if a valid CHECK (column IS NOT NULL) exists before this statement."""
    model = ctx.before if not isinstance(ctx.operation, migrations.RunSQL) else None
    model = model or table_model(ctx.unit, table)
    if model is not None:
        fields = [name for name, col, _ in model.columns() if col == column]
        for constraint in model.options.get("constraints", ()):
            if isinstance(constraint, models.CheckConstraint) and _q_not_null(
                constraint.condition, fields
            ):
                return True
    proofs = _Proofs(ctx.unit.vendor, table, column)
    proofs.feed(_earlier_sql(ctx))
    proofs.feed(list(ctx.migration.operations)[: ctx.index])
    if sql is not None:
        proofs.feed([ctx.operation], stop_at_sql=sql)
    return proofs.proven


class SetNotNullScan(Rule):
    """SET NOT NULL on a table in S0: a full scan under ACCESS EXCLUSIVE.

    What it does
    ------------
    Flags ``AlterField`` from ``null=True`` to ``null=False`` and ``RunSQL`` ``ALTER COLUMN
    ... SET NOT NULL`` on a table in S0. That includes a column added nullable earlier in
    the same deploy unit and backfilled: the table has rows, so the scan happens all the
    same. Silent when a valid ``CHECK ("col" IS NOT NULL)`` exists before the statement (in
    the model state, or added by raw SQL and validated, in this migration or any migration
    walked before it): PostgreSQL 12+ then skips the scan. Silent for tables created in the unit and
    where the vendor has no NOT VALID check to prove the column with (SQLite).

    Why it breaks production
    ------------------------
    ``SET NOT NULL`` reads every row to prove there is no NULL, holding ACCESS EXCLUSIVE:
    every query on the table waits. When the field has a ``default`` or a ``db_default``,
    Django first runs ``UPDATE ... SET col = <default> WHERE col IS NULL`` under that same
    lock, which rewrites the matching rows before the scan. A blank field without one gets
    no UPDATE: its '' only becomes a column default for the statement, which fills no row.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField(null=True)),
        ]),
    ]
    operations = [
        migrations.AlterField("order", "placed_at", models.DateTimeField()),
    ]
    ```

    Use instead
    -----------
    The check was added ``NOT VALID`` and validated in earlier migrations (in separate
    transactions); PostgreSQL proves NOT NULL from it and only takes a brief lock.

    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField(null=True)),
        ]),
        migrations.AddConstraint("order", models.CheckConstraint(
            condition=Q(placed_at__isnull=False), name="placed_at_not_null"
        )),
    ]
    operations = [
        migrations.AlterField("order", "placed_at", models.DateTimeField()),
        migrations.RemoveConstraint("order", "placed_at_not_null"),
    ]
    ```
    """

    id = "L304"
    name = "set-not-null-scan"
    severity = Severity.WARNING
    message = (
        "`{migration}` sets `{table}`.`{column}` NOT NULL{size}: {backfill}a full scan under"
        " {mode} blocks every query on `{table}`"
    )
    help = "Prove the column with a NOT VALID check and VALIDATE it before SET NOT NULL"
    recipe_steps = (
        "Backfill NULLs in batches first (a non-atomic migration), if any can remain.",
        '`RunSQL(\'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_{column}_not_null"'
        ' CHECK ("{column}" IS NOT NULL) NOT VALID\')`: a brief lock.',
        '`RunSQL(\'ALTER TABLE "{table}" VALIDATE CONSTRAINT'
        ' "{table}_{column}_not_null"\')`: scans under SHARE UPDATE EXCLUSIVE, traffic goes on.',
        "Then the `AlterField(null=False)` (PostgreSQL 12+ skips the scan), then drop the"
        ' check: `ALTER TABLE "{table}" DROP CONSTRAINT "{table}_{column}_not_null"`.',
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not supports(ctx.unit, K.ADD_CHECK_NOT_VALID):
            return
        locks = locks_for(ctx)
        backfill = any(lock.step.kind is K.UPDATE and lock.step.detail for lock in locks)
        for lock in locks:
            step = lock.step
            if step.kind is not K.SET_NOT_NULL or not step.hot or not lock.scans:
                continue
            column = step.columns[0] if step.columns else ""
            sql = step.sql or None
            if proven_not_null(ctx, step.table, column, sql):
                continue
            text = (
                f'Django first runs `UPDATE ... WHERE "{column}" IS NULL`, then '
                if backfill
                else ""
            )
            yield self.finding(
                ctx,
                severity=grade(ctx.unit, self.severity, step.rows),
                table=step.table,
                column=column,
                size=size_text(step.rows),
                backfill=text,
                mode=mode_name(lock.table_mode),
                details=details(
                    rows=step.rows,
                    lock=lock.table_mode.pg_name if lock.table_mode else None,
                    backfill=backfill or None,
                ),
            )
