"""D203: a foreign key constraint added over values that may point nowhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import related_key
from django_rollout.rules.base import Rule
from django_rollout.rules.data._schema import (
    Fill,
    column_of,
    existing_fill,
    few_rows,
    graded,
    runsql_actions,
    size_note,
    table_ref,
)
from django_rollout.vendors.base import StatementKind as K


def _constrained(field: models.Field[Any, Any] | None) -> bool:
    """Return True for a field whose column carries a foreign key constraint."""
    return (
        field is not None
        and (field.many_to_one or field.one_to_one)
        and bool(getattr(field, "db_constraint", False))
    )


class ForeignKeyOverDanglingValues(Rule):
    """A foreign key constraint added over existing values that may point nowhere.

    What it does
    ------------
    Flags a foreign key constraint that PostgreSQL validates against rows already in a table
    of S0: ``AlterField`` turning a column of S0 into a ``ForeignKey``/``OneToOneField``
    (from an ``IntegerField``, from ``db_constraint=False``, or pointing at another table:
    not at another model on the same table, which is the same constraint);
    ``AddField`` of a foreign key with a non-NULL ``default``/``db_default`` (every existing
    row gets that id); RunSQL ``ADD FOREIGN KEY`` without ``NOT VALID`` over a column of S0.
    Stays silent for a new nullable foreign key without a default (every row holds NULL),
    ``db_constraint=False``, ``NOT VALID`` constraints, tables created in the unit and
    ``VALIDATE CONSTRAINT``: that is the second step of the safe recipe, and the recipe checks
    for orphans just before it. With S0 row counts, an empty table makes it info.

    Why it breaks production
    ------------------------
    ``ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY`` checks every existing row (Django's
    ``DEFERRABLE INITIALLY DEFERRED`` only defers checks of later writes). One orphan, e.g. a
    row whose parent was deleted while there was no constraint, fails the migration with
    ``insert or update on table "..." violates foreign key constraint "..."``, on production
    only, after holding SHARE ROW EXCLUSIVE on both tables for the scan.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("customer", models.ForeignKey(
                "shop.Customer", models.DO_NOTHING, db_constraint=False
            )),
        ]),
    ]
    operations = [
        migrations.AlterField(
            "order", "customer", models.ForeignKey("shop.Customer", models.CASCADE)
        ),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("customer", models.ForeignKey(
                "shop.Customer", models.DO_NOTHING, db_constraint=False
            )),
        ]),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_fk"
                    " FOREIGN KEY (customer_id) REFERENCES shop_customer (id)"
                    " DEFERRABLE INITIALLY DEFERRED NOT VALID",
                    "ALTER TABLE shop_order DROP CONSTRAINT shop_order_customer_fk",
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    "order", "customer", models.ForeignKey("shop.Customer", models.CASCADE)
                ),
            ],
        ),
    ]
    ```
    """

    id = "D203"
    sqlstates = ("23503",)
    name = "foreign-key-over-dangling-values"
    severity = Severity.WARNING
    message = (
        "a foreign key from `{table}`.`{column}` to `{target}` is validated over existing rows:"
        " any value with no `{target}` row fails the migration with `violates foreign key"
        " constraint`{size}"
    )
    default_message = (
        "every existing row of `{table}` gets `{column}` = {value} and a foreign key to"
        " `{target}`: unless that `{target}` row exists, the migration fails with `violates"
        " foreign key constraint`{size}"
    )
    help = (
        "Add the constraint NOT VALID, fix the rows of `{table}` that point nowhere, then"
        " VALIDATE CONSTRAINT separately"
    )
    recipe_steps = (
        "Find the orphans: SELECT t.{column} FROM {table} t LEFT JOIN {target} r ON r.id ="
        " t.{column} WHERE t.{column} IS NOT NULL AND r.id IS NULL; delete them, point them"
        " at a real row or set them NULL.",
        "Add the constraint without checking old rows: SeparateDatabaseAndState("
        'database_operations=[RunSQL("ALTER TABLE {table} ADD CONSTRAINT ... FOREIGN KEY'
        ' ({column}) REFERENCES {target} (id) DEFERRABLE INITIALLY DEFERRED NOT VALID")],'
        " state_operations=[<the field change>]); new writes are checked from now on.",
        'In a later migration, check for orphans once more, then RunSQL("ALTER TABLE'
        ' {table} VALIDATE CONSTRAINT ...") (SHARE UPDATE EXCLUSIVE: writes continue).',
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if not ctx.table_in_s0 or ctx.before is None:
            return
        if isinstance(op, migrations.AddField) and _constrained(op.field):
            fill = existing_fill(op.field)
            if fill.fill is not Fill.CONSTANT:
                return
            yield self._finding(
                ctx, op.name, op.field, message=self.default_message, value=fill.shown
            )
        elif isinstance(op, migrations.AlterField) and _constrained(op.field):
            if ctx.s0_field(op.name) is None:
                return  # a column of the unit: what it holds is the unit's own doing
            old = ctx.before.fields.get(op.name)
            if _constrained(old) and (
                related_key(old, ctx.app_label) == related_key(op.field, ctx.app_label)
                or ctx.same_target_table(old, op.field)
            ):
                return
            yield self._finding(ctx, op.name, op.field)

    def _finding(
        self, ctx: OperationContext, name: str, field: models.Field[Any, Any], **names: Any
    ) -> Finding:
        assert ctx.before is not None
        key = related_key(field, ctx.app_label)
        if getattr(field.remote_field, "model", None) == "self":
            key = ctx.key
        target_model = ctx.unit.model_now(key) if key is not None else None
        target = target_model.db_table if target_model is not None else str(key)
        small = few_rows(ctx.unit, ctx.before.db_table, 0)
        return self.finding(
            ctx,
            severity=graded(self.severity, small),
            field=name,
            column=column_of(name, field),
            target=target,
            size=size_note(small),
            **names,
        )

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind is not K.ADD_FOREIGN_KEY:
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None:
                continue
            existing = [c for c in action.columns if ref.s0_field(ctx.unit, c) is not None]
            if not existing:
                continue  # a column added in the unit (ADD COLUMN ... REFERENCES): all NULL
            small = few_rows(ctx.unit, ref.now.db_table, 0)
            yield self.finding(
                ctx,
                severity=graded(self.severity, small),
                field=ref.field_of(existing[0]) or existing[0],
                column=", ".join(action.columns),
                target=action.referenced_table or "?",
                table=ref.now.db_table,
                model=ref.now.name,
                size=size_note(small),
            )
