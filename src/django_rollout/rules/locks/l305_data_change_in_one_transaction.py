"""L305: a data change over a whole table in one transaction, or DDL locks held through it."""

from __future__ import annotations

from collections.abc import Iterable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import MigrationContext, OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._data import DataPass, read_pass
from django_rollout.rules.locks._statements import (
    Lock,
    details,
    grade,
    locks_for,
    mode_name,
    size_text,
)


def _held_locks(earlier: Iterable[OperationContext]) -> list[Lock]:
    """Return the locks that block writes to a table in S0, taken by earlier operations and
    held to the end of the transaction (deferred statements run later: they do not count)."""
    held: list[Lock] = []
    for ctx in earlier:
        for lock in locks_for(ctx):
            step = lock.step
            if step.deferred or not step.hot or lock.table_mode is None:
                continue
            if lock.table_mode.blocks_writes:
                held.append(lock)
    return held


class DataChangeInOneTransaction(Rule):
    """A data change over a whole table in one transaction, or after DDL in an atomic migration.

    What it does
    ------------
    Flags, on tables in S0: a ``RunPython`` in an atomic migration that updates or deletes
    over a whole table (a queryset ``update()``/``delete()`` that no ``filter()``,
    ``exclude()``, ``get()`` or slice narrows, a loop of ``save()`` over an unfiltered
    queryset, batches or per-row writes in a loop over the table that all commit together;
    a backfill whose filter looks up only the column it rewrites and selects the rows not
    converted yet, ``filter(col__isnull=True)``/``filter(col="")`` then ``update(col=...)``,
    or ``update(col=Lower("col"))``: on its first run that is every row);
    the same in a non-atomic migration when one statement covers the whole table; ``RunSQL``
    ``UPDATE`` or ``DELETE`` without ``WHERE``; and any data pass (``RunPython``, ``RunSQL``
    DML) that follows, in the same atomic migration, a schema change whose lock blocks
    writes. Silent for writes narrowed by a lookup (as by a ``WHERE``), for a non-atomic
    migration that updates in batches, for ``RunPython`` that only touches tables created in
    the deploy unit, and for ``RunPython.noop``.

    Why it breaks production
    ------------------------
    Every row the transaction changes stays locked until it commits: the release's own
    UPDATEs of those rows wait, and a long transaction holds back VACUUM. After DDL in the
    same atomic migration it is worse: the DDL's lock (ACCESS EXCLUSIVE for ``AddField``)
    is held through the whole data pass, so every query on the table waits for it.

    Example
    -------
    ```python
    def lowercase_emails(apps, schema_editor):
        Customer = apps.get_model("shop", "Customer")
        Customer.objects.update(email=models.functions.Lower("email"))

    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.CharField(max_length=200)),
        ]),
    ]
    operations = [migrations.RunPython(lowercase_emails, migrations.RunPython.noop)]
    ```

    Use instead
    -----------
    ```python
    def lowercase_emails(apps, schema_editor):
        Customer = apps.get_model("shop", "Customer")
        while True:
            batch = list(Customer.objects.filter(email__regex="[A-Z]").values_list(
                "pk", flat=True
            )[:1000])
            if not batch:
                break
            Customer.objects.filter(pk__in=batch).update(email=models.functions.Lower("email"))

    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.CharField(max_length=200)),
        ]),
    ]
    atomic = False
    operations = [migrations.RunPython(lowercase_emails, migrations.RunPython.noop)]
    ```
    """

    id = "L305"
    name = "data-change-in-one-transaction"
    severity = Severity.WARNING
    message = "`{migration}` {what}"
    help = "Move the data change to a non-atomic migration of its own that commits in batches"
    recipe_steps = (
        "Keep schema changes and data changes in separate migrations.",
        "Give the data migration `atomic = False` and change rows in batches of a few thousand"
        " by primary key (`filter(pk__in=batch).update(...)`), each batch its own transaction.",
        "Make it safe to run twice (a re-run after a failure starts from the rows left).",
        "For large tables, run the backfill from a management command between deploys"
        " instead, and keep only the schema change in the migration.",
    )

    def check_migration(self, mctx: MigrationContext) -> Iterable[Finding]:
        for position, ctx in enumerate(mctx.operations):
            found = read_pass(ctx)
            if found is None or not found.touches_s0:
                continue
            held = _held_locks(mctx.operations[:position]) if mctx.atomic else []
            if held:
                yield self._after_ddl(ctx, found, held)
            elif found.writes and (found.whole_table or (mctx.atomic and found.batched)):
                yield self._whole_table(ctx, found, mctx.atomic)

    def _after_ddl(self, ctx: OperationContext, found: DataPass, held: list[Lock]) -> Finding:
        strongest = max(held, key=lambda lock: lock.table_mode or 0)
        tables = sorted({lock.step.table for lock in held})
        rows_known = [lock.step.rows for lock in held if lock.step.rows is not None]
        rows = max(rows_known + ([found.rows] if found.rows is not None else []), default=None)
        names = ", ".join(f"`{t}`" for t in tables)
        what = (
            f"runs a data pass while holding {mode_name(strongest.table_mode)} on {names}"
            f"{size_text(rows)}, taken by the schema change before it in the same transaction:"
            " the lock is held until the data pass commits"
        )
        return self.finding(
            ctx,
            severity=grade(ctx.unit, self.severity, rows),
            what=what,
            details=details(
                rows=rows,
                lock=strongest.table_mode.pg_name if strongest.table_mode else None,
                tables=tuple(tables),
            ),
        )

    def _whole_table(self, ctx: OperationContext, found: DataPass, atomic: bool) -> Finding:
        names = ", ".join(f"`{t}`" for t in sorted(found.tables))
        how = (
            "in batches that all commit together"
            if found.batched and not found.whole_table
            else "in one transaction"
        )
        what = (
            f"changes every row of {names}{size_text(found.rows)} {how}: the rows stay locked"
            " until it commits and the release's writes to them wait"
        )
        return self.finding(
            ctx,
            severity=grade(ctx.unit, self.severity, found.rows),
            what=what,
            details=details(rows=found.rows, tables=tuple(sorted(found.tables)), atomic=atomic),
        )
