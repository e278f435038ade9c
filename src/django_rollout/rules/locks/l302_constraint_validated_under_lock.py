"""L302: a foreign key or check constraint validated in the statement that adds it."""

from __future__ import annotations

from collections.abc import Iterable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    K,
    details,
    grade,
    locks_for,
    mode_name,
    size_text,
    supports,
)

# The constraint kinds that validate every row, and their NOT VALID twin.
_NOT_VALID = {K.ADD_FOREIGN_KEY: K.ADD_FOREIGN_KEY_NOT_VALID, K.ADD_CHECK: K.ADD_CHECK_NOT_VALID}


class ConstraintValidatedUnderLock(Rule):
    """A foreign key or check constraint validated in the same statement that adds it.

    What it does
    ------------
    Flags a foreign key or check constraint added to a table in S0 by a statement that also
    checks every existing row: ``AddField`` of a foreign key whose column gets a value in
    existing rows (a default), ``AlterField`` that makes a column a foreign key or changes
    anything on one (Django drops the constraint and adds it back), ``RenameModel`` of a
    referenced model (same), ``AddConstraint(CheckConstraint)``, a field-level check added
    by ``AlterField`` (``PositiveIntegerField``), and ``RunSQL`` ``ADD CONSTRAINT`` without
    ``NOT VALID``. Silent for ``NOT VALID`` followed by ``VALIDATE CONSTRAINT``, for
    ``db_constraint=False``, for a new nullable foreign key column (all NULL: nothing to
    validate), for tables created in the deploy unit, and where the vendor has no NOT VALID.

    Why it breaks production
    ------------------------
    The validation reads every row while the statement's locks are held: SHARE ROW
    EXCLUSIVE on both tables of a foreign key (writes to the table and to the table it
    points to wait), ACCESS EXCLUSIVE for a check constraint or when the constraint comes
    with ``ADD COLUMN`` (reads wait too). On a large table that is minutes of blocked traffic.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("price", models.DecimalField(max_digits=10, decimal_places=2)),
        ]),
    ]
    operations = [
        migrations.AddConstraint(
            "product", models.CheckConstraint(condition=Q(price__gte=0), name="price_gte_0")
        ),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("price", models.DecimalField(max_digits=10, decimal_places=2)),
        ]),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'ALTER TABLE "shop_product" ADD CONSTRAINT "price_gte_0"'
                    ' CHECK ("price" >= 0) NOT VALID',
                ),
                migrations.RunSQL(
                    'ALTER TABLE "shop_product" VALIDATE CONSTRAINT "price_gte_0"'
                ),
            ],
            state_operations=[
                migrations.AddConstraint(
                    "product",
                    models.CheckConstraint(condition=Q(price__gte=0), name="price_gte_0"),
                ),
            ],
        ),
    ]
    ```
    """

    id = "L302"
    name = "constraint-validated-under-lock"
    severity = Severity.WARNING
    message = (
        "`{migration}` adds {what} to `{table}`{size} and checks every row in the same"
        " statement, under {mode} on `{table}`{referenced}"
    )
    help = "Add the constraint NOT VALID, then VALIDATE CONSTRAINT in a separate statement"
    recipe_steps = (
        "Wrap the operation in `SeparateDatabaseAndState`, keeping it in `state_operations`.",
        'In `database_operations`: `ALTER TABLE "{table}" ADD CONSTRAINT "{constraint}"'
        " ... NOT VALID` (a brief lock; new and updated rows are checked from now on).",
        'Then `ALTER TABLE "{table}" VALIDATE CONSTRAINT "{constraint}"`: it reads every'
        " row under SHARE UPDATE EXCLUSIVE, so reads and writes continue (a separate"
        " migration, or a later statement of this one).",
        "For a foreign key Django creates, keep its name and `DEFERRABLE INITIALLY DEFERRED`"
        " so that later migrations find the constraint they expect.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        for lock in locks_for(ctx):
            step = lock.step
            twin = _NOT_VALID.get(step.kind)
            if twin is None or not step.hot or not lock.scans:
                continue
            if not supports(ctx.unit, twin):
                continue  # the vendor cannot split the validation off
            is_fk = step.kind is K.ADD_FOREIGN_KEY
            referenced = ""
            if is_fk and step.referenced_table and lock.referenced_mode is not None:
                referenced = f" and {mode_name(lock.referenced_mode)} on `{step.referenced_table}`"
            column = step.columns[0] if step.columns else ""
            what = f"a foreign key on `{column}`" if is_fk else "a check constraint"
            yield self.finding(
                ctx,
                severity=grade(ctx.unit, self.severity, step.rows),
                what=what,
                size=size_text(step.rows),
                mode=mode_name(lock.table_mode),
                referenced=referenced,
                table=step.table,
                constraint=step.constraint_name or f"{step.table}_{column or 'check'}_...",
                details=details(
                    rows=step.rows,
                    lock=lock.table_mode.pg_name if lock.table_mode else None,
                    referenced_table=step.referenced_table,
                ),
            )
