"""D202: NOT NULL set on an existing column with nothing to fill its NULLs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import db_default_fills
from django_rollout.rules.base import Rule
from django_rollout.rules.data._schema import (
    Fill,
    column_of,
    emptied_earlier,
    existing_fill,
    few_rows,
    graded,
    runsql_actions,
    size_note,
    table_ref,
    written_by_data_step,
    written_earlier,
)
from django_rollout.vendors.base import StatementKind as K


class NotNullOverExistingNulls(Rule):
    """NOT NULL set on a column of S0 with no default to fill the NULLs already there.

    What it does
    ------------
    Flags ``AlterField`` from ``null=True`` to ``null=False`` on a column that existed, and
    was nullable, in S0, when the new field has neither a ``default`` nor a ``db_default``,
    and RunSQL ``ALTER COLUMN ... SET NOT NULL`` on such a column. With a default (Python or
    database), Django's schema editor first runs ``UPDATE ... SET col = <default> WHERE col
    IS NULL`` (``BaseDatabaseSchemaEditor._alter_field``, the "4-way default alteration"),
    so the rule stays silent. It is an error when nothing backfilled the column. When a data
    step may have backfilled it first (an earlier operation of the same migration: a
    RunPython that looks the model up, a RunSQL UPDATE of the column; or an earlier
    migration, deployed or in the unit: a RunPython that writes the field into existing
    rows, a RunSQL UPDATE of the column) it is a warning: rows the release still serving
    writes NULL between the backfill and the ALTER still fail it. And when C107 reports the
    same column on the same operation (the old release's field is nullable, so its writes
    are the only NULLs left), it is info: C107 names the failure. Silent for columns added
    in the deploy unit (C101 judges those), columns already NOT NULL in S0 and tables
    created in the unit. With S0 row counts, an empty table makes it info.

    It also flags an ``AddField`` of a NOT NULL column to a table of S0 when Django gives
    the rows already there nothing (no ``default``, no ``db_default``, not ``blank=True``
    text, not ``auto_now``): a foreign key or a number added without a default, as a
    hand-written migration or the second half of a split initial migration has it.
    PostgreSQL and SQLite refuse it on the first row; MySQL fills the type's implicit
    value (0, '') instead, so it stays silent there. After an earlier operation of the same
    atomic migration deletes every row (``Model.objects.all().delete()``, ``DELETE`` without
    ``WHERE``, ``TRUNCATE``) it is info: only a concurrent insert can refill the table in
    between (a warning when the migration is not atomic).

    Why it breaks production
    ------------------------
    ``SET NOT NULL`` scans the table and refuses the first NULL it meets: ``column "..." of
    relation "..." contains null values``. The migration fails, on production only (test
    databases hold no legacy NULLs), after holding ACCESS EXCLUSIVE for the scan. Note that
    ``blank=True`` gives no backfill: Django only uses ``''`` for new columns.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("phone", models.CharField(max_length=30, null=True)),
        ]),
    ]
    operations = [
        migrations.AlterField("customer", "phone", models.CharField(max_length=30)),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("phone", models.CharField(max_length=30, null=True)),
        ]),
    ]
    operations = [
        # Django fills the NULLs with '' before it sets NOT NULL.
        migrations.AlterField(
            "customer", "phone", models.CharField(max_length=30, default="", db_default="")
        ),
    ]
    ```
    """

    id = "D202"
    sqlstates = ("23502",)
    name = "not-null-over-existing-nulls"
    severity = Severity.ERROR
    message = (
        "`{table}`.`{column}` becomes NOT NULL with nothing to fill its NULLs: any NULL row"
        ' makes the migration fail with `column "{column}" ... contains null values`{size}'
    )
    backfilled_message = (
        "`{table}`.`{column}` becomes NOT NULL after a backfill: a NULL the release still"
        " serving writes in between (it sees the column nullable) fails the migration with"
        ' `column "{column}" ... contains null values`{size}'
    )
    old_writes_message = (
        "`{table}`.`{column}` becomes NOT NULL after a backfill: only NULLs the old release"
        ' writes since then can fail the migration with `column "{column}" ... contains'
        " null values` (C107 reports those writes){size}"
    )
    added_message = (
        "`{table}`.`{column}` is added NOT NULL with nothing for the rows already there: any"
        ' row makes the migration fail with `column "{column}" ... contains null values`{size}'
    )
    emptied_message = (
        "`{table}`.`{column}` is added NOT NULL with nothing for existing rows, after an"
        " earlier data step of this migration deletes them all: only rows the old release"
        ' inserts in between make it fail with `column "{column}" ... contains null'
        " values`{size}"
    )
    added_help = (
        "Add `{field}` with `null=True` (or a `db_default` that existing rows can keep),"
        " backfill it, then make it NOT NULL"
    )
    help = (
        "Backfill the NULLs of `{table}`.`{column}` first, or give `{field}` a `default` or"
        " `db_default` so Django fills them"
    )
    recipe_steps = (
        "Deploy code that never writes NULL into `{column}` first (see C107).",
        "Backfill in batches in a migration of its own: RunPython with"
        ' apps.get_model("{app_label}", "{model}"), UPDATE {table} SET {column} = <value>'
        " WHERE {column} IS NULL (a few thousand ids per batch).",
        'Add CHECK ("{column}" IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT in a'
        " separate migration (a scan without blocking writes).",
        "AlterField(null=False): PostgreSQL 12+ uses the validated check and skips the scan;"
        " then drop the check.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if isinstance(op, migrations.AddField):
            yield from self._added(ctx, op)
            return
        if not isinstance(op, migrations.AlterField) or not ctx.table_in_s0:
            return
        if ctx.before is None:
            return
        old = ctx.before.fields.get(op.name)
        new = op.field
        if old is None or new.many_to_many or not old.null or new.null:
            return
        s0 = ctx.s0_field(op.name)
        if s0 is None or not s0.null:
            return
        if db_default_fills(new) or (new.has_default() and new.default is not None):
            return  # Django runs UPDATE ... SET col = default WHERE col IS NULL first
        column = column_of(op.name, new)
        table = ctx.before.db_table
        backfilled = written_earlier(ctx, ctx.key, table, column) or written_by_data_step(
            ctx, ctx.key, table, [op.name]
        )
        yield self._finding(ctx, table, backfilled, field=op.name, column=column)

    def _added(self, ctx: OperationContext, op: migrations.AddField) -> Iterable[Finding]:
        field = op.field
        if not ctx.table_in_s0 or ctx.before is None or ctx.unit.vendor == "mysql":
            return
        if field.many_to_many or field.null:
            return
        if isinstance(field, models.ForeignObject) and not isinstance(field, models.ForeignKey):
            return  # no column of its own
        if existing_fill(field).fill is not Fill.NULL:
            return
        small = few_rows(ctx.unit, ctx.before.db_table, 0)
        severity, message = graded(self.severity, small), self.added_message
        if emptied_earlier(ctx, ctx.key, ctx.before.db_table):
            # In one transaction only a concurrent insert can refill the table in between;
            # a non-atomic migration commits the delete and leaves the old release time to.
            severity = Severity.INFO if ctx.atomic else Severity.WARNING
            message = self.emptied_message
        yield self.finding(
            ctx,
            severity=severity,
            message=message,
            help=self.added_help,
            size=size_note(small),
            field=op.name,
            column=column_of(op.name, field),
        )

    def _finding(
        self, ctx: OperationContext, db_table: str, backfilled: bool, **names: Any
    ) -> Finding:
        small = few_rows(ctx.unit, db_table, 0)
        message = None
        severity = self.severity
        if backfilled:
            column = str(names.get("column", ""))
            table = str(names.get("table", db_table))
            if _c107_reports(ctx, table, column):
                severity, message = Severity.INFO, self.old_writes_message
            else:
                severity, message = Severity.WARNING, self.backfilled_message
        return self.finding(
            ctx,
            severity=graded(severity, small),
            message=message,
            size=size_note(small),
            **names,
        )

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        updated: set[tuple[str | None, str]] = set()
        for action in runsql_actions(ctx):
            if action.kind is K.UPDATE:
                updated.update((action.table, c) for c in action.columns)
                continue
            if action.kind is not K.SET_NOT_NULL:
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None:
                continue
            for column in action.columns:
                s0 = ref.s0_field(ctx.unit, column)
                if not isinstance(s0, models.Field) or not s0.null:
                    continue
                backfilled = (
                    (action.table, column) in updated
                    or written_earlier(ctx, ref.key, ref.now.db_table, column)
                    or written_by_data_step(ctx, ref.key, ref.now.db_table, [column])
                )
                yield self._finding(
                    ctx,
                    ref.now.db_table,
                    backfilled,
                    field=ref.field_of(column) or column,
                    column=column,
                    table=ref.now.db_table,
                    model=ref.now.name,
                )


def _c107_reports(ctx: OperationContext, table: str, column: str) -> bool:
    """Return True when C107 reports ``table.column`` on this operation: the old release's
    field is nullable, so its writes of NULL are what fails after a backfill."""
    from django_rollout.rules.compat.c107_not_null_on_column_old_release_nulls import (
        NotNullOnColumnOldReleaseNulls,
    )

    named = f"`{table}`.`{column}`"
    return any(named in f.message for f in NotNullOnColumnOldReleaseNulls().check_operation(ctx))
