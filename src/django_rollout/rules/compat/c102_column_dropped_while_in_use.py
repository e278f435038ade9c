"""C102: a column dropped while the old release still reads or writes it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import column_name
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import s0_column, s0_column_field, sql_actions, target_in_s0
from django_rollout.vendors.base import StatementKind


class ColumnDroppedWhileInUse(Rule):
    """Column dropped from a table in S0 while the old release's model still has its field.

    What it does
    ------------
    Flags ``RemoveField`` (also inside ``SeparateDatabaseAndState.database_operations``) and
    ``RunSQL`` ``ALTER TABLE ... DROP COLUMN`` that drop a column whose field is still in the
    models of the release now serving. Silent for state-only removals, columns added in the
    same deploy unit, tables created in it, and columns whose field S0 already removed (the
    second release of the two-release pattern). Many-to-many fields have no column: dropping
    their join table is C105.

    Why it breaks production
    ------------------------
    Django's models select, insert and update every concrete field they know. From the moment
    the migration commits until the last old server stops, every query of the old release on
    that model fails with ``ProgrammingError: column "..." does not exist`` — reads included,
    not only the code that used the field.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("legacy_sku", models.CharField(max_length=32, blank=True)),
        ]),
    ]
    operations = [
        migrations.RemoveField("product", "legacy_sku"),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("legacy_sku", models.CharField(max_length=32, blank=True)),
        ]),
    ]
    # Release 1: the code stops using the field; the column stays (and becomes nullable, so
    # that this release's inserts, which omit it, succeed).
    operations = [
        migrations.AlterField(
            "product", "legacy_sku", models.CharField(max_length=32, blank=True, null=True)
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField("product", "legacy_sku")],
        ),
    ]
    ```
    """

    id = "C102"
    # 42803: PostgreSQL reads a missing ``t.count`` as count(t), an aggregate of the row.
    sqlstates = ("42703", "42803")
    name = "column-dropped-while-in-use"
    severity = Severity.ERROR
    message = (
        "`{table}`.`{column}` is dropped while the old release's `{model}` model still has"
        ' `{field}`: its queries on `{table}` fail with `column "{column}" does not exist`'
    )
    help = (
        "Remove `{field}` from the models state-only in this release; drop `{column}` in the"
        " next one"
    )
    recipe_steps = (
        "This release: stop using `{field}` in the code and remove it from the state only:"
        " `migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField("
        '"{model_lower}", "{field}")])`. If the column is NOT NULL without a database'
        " default, make it nullable (or give it a `db_default`) first, in the same migration,"
        " so the new release's inserts that omit it succeed.",
        "Deploy it; the old release keeps reading and writing `{table}`.`{column}`.",
        "Next release (when no server runs the code from before {migration}): drop the"
        ' column with `migrations.RunSQL(\'ALTER TABLE "{table}" DROP COLUMN "{column}"\','
        " reverse_sql=migrations.RunSQL.noop)`.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RemoveField):
            yield from self._remove_field(ctx, op)
        elif isinstance(op, migrations.RunSQL):
            for action in sql_actions(ctx):
                if action.kind is not StatementKind.DROP_COLUMN or not action.columns:
                    continue
                found = s0_column(ctx.unit, action.table, action.columns[0])
                if found is None:
                    continue
                model, field_name = found
                yield self.finding(
                    ctx,
                    model=model.name,
                    table=model.db_table,
                    field=field_name,
                    column=action.columns[0],
                    model_lower=model.name.lower(),
                )

    def _remove_field(self, ctx: OperationContext, op: migrations.RemoveField) -> Iterable[Finding]:
        if ctx.before is None or not target_in_s0(ctx):
            return
        field = ctx.before.fields.get(op.name)
        if field is None or field.many_to_many:
            return
        column = column_name(op.name, field)
        s0_field = s0_column_field(ctx, op.name, field)
        if column is None or s0_field is None or s0_field.many_to_many:
            return
        yield self.finding(
            ctx,
            model=ctx.before.name,
            table=ctx.before.db_table,
            field=op.name,
            column=column,
            model_lower=op.model_name_lower,
        )
