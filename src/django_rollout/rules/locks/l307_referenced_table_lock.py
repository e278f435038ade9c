"""L307: a lock on the table a foreign key points to."""

from __future__ import annotations

from collections.abc import Iterable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    Lock,
    details,
    grade,
    locks_for,
    mode_name,
    size_text,
)


def referenced_locks(ctx: OperationContext) -> list[Lock]:
    """Return the locks ``ctx`` takes on a table in S0 that a foreign key points to and
    that hurt: one that blocks reads (dropping a constraint, column or table), or one that
    blocks writes for as long as the referencing table is scanned (a validated foreign key).

    A brief SHARE ROW EXCLUSIVE with nothing to scan (a new, empty referencing table, or a
    new column that is NULL in every row) is left out: it lasts as long as a catalog update.
    """
    own = ctx.model.db_table if ctx.model is not None else None
    found: list[Lock] = []
    for lock in locks_for(ctx):
        step, mode = lock.step, lock.referenced_mode
        if mode is None or not step.referenced_table or not step.referenced_hot:
            continue
        if step.referenced_table in (step.table, own):
            continue  # the operation's own table (self-reference, M2M table): not a side effect
        if mode.blocks_reads or (mode.blocks_writes and lock.scans and step.hot):
            found.append(lock)
    return found


class ReferencedTableLock(Rule):
    """A lock on the table a foreign key points to.

    What it does
    ------------
    Flags an operation that locks the table a foreign key points to, when that table is in
    S0: dropping a foreign key column (``RemoveField``), a foreign key constraint
    (``AlterField`` away from a foreign key, ``db_constraint=False``, or any change to a
    foreign key: Django drops and re-adds the constraint) or a table that holds foreign keys
    (``DeleteModel``, a many-to-many field's table) takes ACCESS EXCLUSIVE on the referenced
    table; adding a validated foreign key to a table in S0 holds SHARE ROW EXCLUSIVE on the
    referenced table for the whole scan. Silent when the referenced table is new in the
    unit, and for the brief SHARE ROW EXCLUSIVE of a foreign key with nothing to validate
    (``CreateModel``, a new nullable foreign key column): L306 covers lock queues.

    Why it breaks production
    ------------------------
    The referenced table is often the hottest one (``auth_user``, ``orders_order``): while
    the ACCESS EXCLUSIVE waits behind a long transaction, every query on it queues, so
    dropping a column from a side table takes log-in down. SHARE ROW EXCLUSIVE blocks every
    write to the referenced table until the referencing table has been scanned.

    Example
    -------
    ```python
    other_apps = {"auth": [
        migrations.CreateModel("User", [("id", models.AutoField(primary_key=True))]),
    ]}
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("created_by", models.ForeignKey("auth.User", models.SET_NULL, null=True)),
        ]),
    ]
    operations = [migrations.RemoveField("order", "created_by")]
    ```

    Use instead
    -----------
    ```python
    other_apps = {"auth": [
        migrations.CreateModel("User", [("id", models.AutoField(primary_key=True))]),
    ]}
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("created_by", models.ForeignKey("auth.User", models.SET_NULL, null=True,
                                             db_constraint=False)),
        ]),
    ]
    operations = [migrations.RemoveField("order", "created_by")]
    ```
    """

    id = "L307"
    name = "referenced-table-lock"
    severity = Severity.WARNING
    message = (
        "`{migration}` takes {mode} on `{referenced}`{size}, the table {source} points to:"
        " {effect}"
    )
    help = "Set a short lock_timeout, and drop or add the constraint on its own, off-peak"
    recipe_steps = (
        "Run the constraint change in a migration of its own, starting with"
        " `RunSQL(\"SET LOCAL lock_timeout = '3s'\")`, and retry on timeout.",
        "Dropping: first drop only the constraint"
        " (`AlterField(..., db_constraint=False)`) in a quiet moment, then drop the column or"
        " table in a later migration, which then touches `{referenced}` no more.",
        "Adding: add the constraint NOT VALID (brief), then `VALIDATE CONSTRAINT` in a later"
        " migration: it locks `{referenced}` only in ROW SHARE (see L302).",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        seen: set[str] = set()
        for lock in referenced_locks(ctx):
            step = lock.step
            referenced = step.referenced_table or ""
            if referenced in seen:
                continue
            seen.add(referenced)
            mode = lock.referenced_mode
            if mode is not None and mode.blocks_reads:
                rows = ctx.unit.rows(referenced)
                effect = "every query on it queues behind the lock while it waits"
            else:
                rows = step.rows
                effect = f"writes to it wait until `{step.table}` has been scanned"
            yield self.finding(
                ctx,
                severity=grade(ctx.unit, self.severity, rows),
                mode=mode_name(mode),
                referenced=referenced,
                size=size_text(rows),
                table=step.table,
                column=step.columns[0] if step.columns else "",
                # A dropped table names no column: its foreign keys go with it.
                source=(
                    f"`{step.table}`.`{step.columns[0]}`"
                    if step.columns
                    else f"`{step.table}` (dropped with its foreign keys)"
                ),
                effect=effect,
                details=details(
                    rows=rows, referenced_table=referenced, lock=mode.pg_name if mode else None
                ),
            )
