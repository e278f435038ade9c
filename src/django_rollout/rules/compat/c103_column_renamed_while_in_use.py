"""C103: a column renamed in the database while the old release uses the old name."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import column_name
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import s0_column, sql_actions
from django_rollout.rules.data._schema import walk_operations
from django_rollout.vendors.base import StatementKind


class ColumnRenamedWhileInUse(Rule):
    """Column of a table in S0 renamed while the old release still uses its old name.

    What it does
    ------------
    Flags ``RenameField`` and ``AlterField`` whose column name changes (a new ``db_column``,
    a plain field turned into a foreign key whose column gains ``_id``), and ``RunSQL``
    ``ALTER TABLE ... RENAME COLUMN``, on a column the old release's model stores. Silent when
    ``db_column`` keeps the old name, for columns added and tables created in the same deploy
    unit, and for state-only operations. Renaming a many-to-many field renames its join table:
    that is C104. When a later operation of the same migration adds a column under the old
    name (a field renamed away to make room for its replacement), the old release's queries
    no longer fail on a missing column: they reach the new one, and the message says so.

    Why it breaks production
    ------------------------
    The old release keeps naming the old column in every SELECT, INSERT and UPDATE of the
    model. Once the rename commits they all fail with
    ``ProgrammingError: column "..." does not exist``, until the last old server stops; the
    new release fails the same way if it starts before the migration runs.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("phone", models.CharField(max_length=30)),
        ]),
    ]
    operations = [
        migrations.RenameField("customer", "phone", "phone_number"),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("phone", models.CharField(max_length=30)),
        ]),
    ]
    # Rename in the code only: the column keeps its name.
    operations = [
        migrations.AlterField(
            "customer", "phone", models.CharField(max_length=30, db_column="phone")
        ),
        migrations.RenameField("customer", "phone", "phone_number"),
    ]
    ```
    """

    id = "C103"
    # 42803: PostgreSQL reads a missing ``t.count`` as count(t), an aggregate of the row.
    sqlstates = ("42703", "42803")
    name = "column-renamed-while-in-use"
    severity = Severity.ERROR
    message = (
        "`{table}`.`{column}` is renamed to `{new_column}` while the old release still uses"
        ' `{column}`: its queries on `{table}` fail with `column "{column}" does not exist`'
    )
    readded_message = (
        "`{table}`.`{column}` is renamed to `{new_column}` and a new `{column}` column takes its"
        " name in the same migration: the old release's queries of `{column}` reach the new"
        " column, whose values are not the ones it wrote, and its writes fail where they do not"
        " fit it"
    )
    help = 'Keep the column name with `db_column="{column}"` and rename the field in code only'
    recipe_steps = (
        "This release: rename the field in the code only, keeping the column:"
        ' give the field `db_column="{column}"` (the migration becomes a state-only change'
        " and runs no SQL).",
        "If the column name itself must change, add `{new_column}` as a new nullable column in"
        " this release and write both columns from the new code (or a trigger).",
        "Backfill `{new_column}` from `{column}` in batches.",
        "Next release (when no server runs the code from before {migration}): read"
        " `{new_column}` only; the release after it drops `{column}` (see C102).",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, (migrations.RenameField, migrations.AlterField)):
            yield from self._field_change(ctx, op)
        elif isinstance(op, migrations.RunSQL):
            for action in sql_actions(ctx):
                if action.kind is not StatementKind.RENAME_COLUMN or not action.columns:
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
                    new_column=action.new_name or "",
                )

    def _field_change(
        self, ctx: OperationContext, op: migrations.RenameField | migrations.AlterField
    ) -> Iterable[Finding]:
        if ctx.before is None or ctx.after is None or not ctx.table_in_s0:
            return
        if isinstance(op, migrations.RenameField):
            old_name, new_name = op.old_name, op.new_name
        else:
            old_name = new_name = op.name
        old_field = ctx.before.fields.get(old_name)
        new_field = ctx.after.fields.get(new_name)
        if old_field is None or new_field is None:
            return
        old_column = column_name(old_name, old_field)
        new_column = column_name(new_name, new_field)
        if old_column is None or new_column is None or old_column == new_column:
            return
        # The field now named ``new_name`` descends from an S0 field (renames followed), and
        # the column about to be renamed still carries that S0 field's column name.
        s0_field = ctx.s0_field(new_name)
        s0 = ctx.s0_model
        if s0_field is None or s0 is None:
            return
        s0_name = next((n for n, f in s0.fields.items() if f is s0_field), new_name)
        if column_name(s0_name, s0_field) != old_column:
            return
        readded = _readded(ctx, op.model_name, old_column)
        yield self.finding(
            ctx,
            message=self.readded_message if readded else None,
            field=new_name,
            column=old_column,
            new_column=new_column,
            details={"readded": True} if readded else None,
        )

    @classmethod
    def observed_as(cls, finding: Finding) -> tuple[str, ...]:
        if dict(finding.details).get("readded"):
            # The old name names the new column: what the old release writes does not fit
            # it (value too long, invalid input) or breaks its constraints.
            return ("22", "23")
        return cls.sqlstates


def _readded(ctx: OperationContext, model_name: str, column: str) -> bool:
    """Return True when a later operation of the same migration adds a column named
    ``column`` to the model (a field renamed away, then added anew under its old name)."""
    model = model_name.lower()
    for later in walk_operations(ctx.migration.operations[ctx.index + 1 :]):
        if (
            isinstance(later, migrations.AddField)
            and later.model_name_lower == model
            and column_name(later.name, later.field) == column
        ):
            return True
    return False
