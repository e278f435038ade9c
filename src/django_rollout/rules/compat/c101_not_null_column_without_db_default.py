"""C101: a NOT NULL column whose default lives only in Python."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import column_name, db_default_fills
from django_rollout.rules.base import Rule


def stores_required_value(field: models.Field[Any, Any]) -> bool:
    """Return True for a field with a NOT NULL column and no database-side default."""
    if field.many_to_many or field.null or db_default_fills(field):
        return False
    if isinstance(field, models.GeneratedField):
        return False
    return not getattr(field, "primary_key", False)


class NotNullColumnWithoutDbDefault(Rule):
    """NOT NULL column added to a table in S0 with a default that lives only in Python.

    What it does
    ------------
    Flags a column that the old release does not know about and that ends up NOT NULL without a
    database default (``db_default``): added NOT NULL directly, or added nullable and made NOT
    NULL later in the same deploy unit. ``db_default=None`` is a ``DEFAULT NULL`` and does not
    count. Silent for a column added under a name the old release's model has on that table
    (its field renamed or dropped away first): the old release's INSERTs name it, and C103
    or C102 says what they meet instead.

    Why it breaks production
    ------------------------
    Django fills existing rows with the ``default`` and then drops the column default, so the
    default lives only in the new release's Python. The old release, still serving while the
    migration runs and the code rolls out, inserts rows without the column and gets
    ``IntegrityError: null value in column "..." violates not-null constraint``.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ]),
    ]
    operations = [
        migrations.AddField("product", "weight_grams", models.PositiveIntegerField(default=0)),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ]),
    ]
    operations = [
        migrations.AddField(
            "product", "weight_grams", models.PositiveIntegerField(db_default=0, default=0)
        ),
    ]
    ```
    """

    id = "C101"
    sqlstates = ("23502",)
    name = "not-null-column-without-db-default"
    severity = Severity.ERROR
    message = (
        "`{table}`.`{column}` becomes NOT NULL with no database default: the old release's"
        " INSERTs omit it and fail with a not-null violation"
    )
    help = "Give `{field}` a `db_default`, or add it nullable and set NOT NULL in a later release"
    recipe_steps = (
        "This release: add the column with a database default, so inserts that omit it"
        ' succeed: `migrations.AddField("{model_lower}", "{field}", <field>(db_default=...'
        ", default=...))` (Django 5.0+), or add it with `null=True`.",
        "Deploy it; the old release keeps inserting and the database fills `{column}`.",
        "If you added it nullable: backfill `{table}`.`{column}` in batches with a RunPython"
        ' (apps.get_model("{app_label}", "{model}")), in this release or the next.',
        "Next release (when no server runs the code from before {migration}): set NOT NULL"
        ' with a CHECK ("{column}" IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then'
        " AlterField(null=False) (see L304).",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database or not ctx.table_in_s0:
            return
        op = ctx.operation
        if isinstance(op, migrations.AddField):
            name, field = op.name, op.field
        elif isinstance(op, migrations.AlterField) and ctx.before is not None:
            name, field = op.name, op.field
            old = ctx.before.fields.get(name)
            if old is None or not old.null or ctx.s0_field(name) is not None:
                # The column existed in S0 (C107 judges that), or was already NOT NULL.
                return
        else:
            return
        if not stores_required_value(field):
            return
        column = column_name(name, field)
        s0 = ctx.s0_model
        if s0 is not None and any(column_name(n, f) == column for n, f in s0.fields.items()):
            # A column of the old release's name, renamed or dropped away earlier: its
            # INSERTs name it (C103 and C102 say what they meet instead).
            return
        yield self.finding(
            ctx,
            field=name,
            column=column,
            model_lower=op.model_name_lower,
        )
