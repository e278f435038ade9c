"""C107: NOT NULL set on a column the old release may write NULL into."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import column_name
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import s0_column, sql_actions
from django_rollout.vendors.base import StatementKind


def not_null_check_column(expression: str | None) -> str | None:
    """Return the column of a ``<column> IS NOT NULL`` check expression, else None.

    Such a check, NOT VALID or not, rejects the old release's NULLs just like SET NOT NULL.
    """
    if not expression:
        return None
    head, sep, tail = expression.strip().strip("()").rpartition(" IS NOT NULL")
    if not sep or tail.strip() or not head.strip():
        return None
    column = head.strip().strip('"')
    return column.lower() if column.replace("_", "").isalnum() else None


class NotNullOnColumnOldReleaseNulls(Rule):
    """NOT NULL set on a column whose field the old release has as nullable.

    What it does
    ------------
    Flags ``AlterField`` from ``null=True`` to ``null=False`` on a column that exists in S0
    with a nullable field, and ``RunSQL`` ``SET NOT NULL`` or ``CHECK (col IS NOT NULL)`` on
    such a column. A ``db_default`` does not make it safe. Silent when the S0 field is already
    NOT NULL, for columns added in the deploy unit (C101 judges those), for tables created in
    it, and for state-only operations.

    Why it breaks production
    ------------------------
    The old release's field allows ``None`` and Django writes it explicitly: ``save()`` and
    ``create()`` send every field, so a ``db_default`` never applies. Once the constraint
    commits, those writes fail with ``IntegrityError: null value in column "..." violates
    not-null constraint`` until the last old server stops. (Existing NULL rows are D202.)

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("note", models.CharField(max_length=200, null=True)),
        ]),
    ]
    operations = [
        migrations.AlterField(
            "order", "note", models.CharField(max_length=200, db_default="", default="")
        ),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("note", models.CharField(max_length=200, null=True)),
        ]),
    ]
    # This release: the code stops writing NULL; the column stays nullable for now.
    operations = [
        migrations.AlterField(
            "order", "note", models.CharField(max_length=200, null=True, default="")
        ),
    ]
    ```
    """

    id = "C107"
    sqlstates = ("23502",)
    name = "not-null-on-column-old-release-nulls"
    severity = Severity.ERROR
    message = (
        "`{table}`.`{column}` becomes NOT NULL while the old release's `{model}.{field}` is"
        " nullable: its writes of `None` fail with a not-null violation"
    )
    help = "Stop writing NULL to `{field}` in this release; set NOT NULL in the next one"
    recipe_steps = (
        "This release: make the new code never write NULL to `{field}` (a `default`, form"
        " and serializer changes), keeping `null=True` on the field.",
        "Backfill `{table}`.`{column}` where it is NULL, in batches.",
        "Next release (when no server runs the code from before {migration}): add"
        ' `CHECK ("{column}" IS NOT NULL) NOT VALID`, `VALIDATE CONSTRAINT`, then'
        " `AlterField(null=False)` (see L304).",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.AlterField):
            yield from self._alter_field(ctx, op)
        elif isinstance(op, migrations.RunSQL):
            yield from self._run_sql(ctx)

    def _alter_field(self, ctx: OperationContext, op: migrations.AlterField) -> Iterable[Finding]:
        if ctx.before is None or not ctx.table_in_s0:
            return
        old = ctx.before.fields.get(op.name)
        new = op.field
        if old is None or new.many_to_many or not old.null or new.null:
            return
        s0_field = ctx.s0_field(op.name)
        if s0_field is None or not s0_field.null or s0_field.many_to_many:
            return
        yield self.finding(
            ctx, field=op.name, column=column_name(op.name, new), model=ctx.before.name
        )

    def _run_sql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in sql_actions(ctx):
            if action.kind is StatementKind.SET_NOT_NULL or (
                action.kind is StatementKind.ADD_NOT_NULL_NOT_VALID
            ):
                column = action.columns[0] if action.columns else None
            elif action.kind in (StatementKind.ADD_CHECK, StatementKind.ADD_CHECK_NOT_VALID):
                column = not_null_check_column(action.value)
            else:
                continue
            found = None if column is None else s0_column(ctx.unit, action.table, column)
            if found is None:
                continue
            model, name = found
            if not model.fields[name].null:
                continue
            yield self.finding(
                ctx,
                model=model.name,
                table=model.db_table,
                field=name,
                column=column,
            )
