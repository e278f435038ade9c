"""L308: locks accumulated in one atomic migration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import MigrationContext, OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    Lock,
    details,
    grade,
    locks_for,
    size_text,
)


@dataclass(frozen=True)
class _Timed:
    """A lock with the operation that takes it, in the order the migration runs."""

    ctx: OperationContext
    lock: Lock


def timeline(contexts: Iterable[OperationContext]) -> list[_Timed]:
    """Return the migration's locks in execution order: Django runs deferred statements
    (foreign keys, indexes of new columns) after the last operation."""
    now: list[_Timed] = []
    later: list[_Timed] = []
    for ctx in contexts:
        for lock in locks_for(ctx):
            (later if lock.step.deferred else now).append(_Timed(ctx, lock))
    return now + later


def _long(item: _Timed) -> str | None:
    """Describe why a later statement keeps the transaction open long, or None."""
    lock, step = item.lock, item.lock.step
    if not step.hot:
        return None
    if lock.rewrites:
        return f"rewrites `{step.table}`"
    if lock.scans:
        return f"scans `{step.table}`"
    return None


class LocksAccumulatedInTransaction(Rule):
    """Locks accumulated in one atomic migration.

    What it does
    ------------
    Flags an atomic migration in which an operation takes ACCESS EXCLUSIVE on a table in S0
    (however briefly: ``AddField``, ``RenameField``, a dropped constraint) and a later
    operation then scans or rewrites a table in S0 (an index build, a validated constraint,
    ``SET NOT NULL``, a type change) or locks another table in S0 against writes. The first
    lock is held until the migration commits. Silent for single-operation migrations,
    non-atomic migrations and migrations that touch only tables created in the deploy unit.
    A data pass (``RunPython``, ``RunSQL`` DML) after the lock is reported by L305.

    Why it breaks production
    ------------------------
    Locks are released at COMMIT, not when the statement ends: the cheap ``ALTER TABLE``
    keeps every query on its table waiting for the whole index build or scan that follows,
    and while the migration waits for a lock on the next table, the tables it already holds
    stay blocked (and two migrations taking the same tables in a different order deadlock).

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("status", models.CharField(max_length=20)),
        ]),
    ]
    operations = [
        migrations.AddField("order", "note", models.TextField(null=True)),
        migrations.AddIndex("order", models.Index(fields=["status"], name="order_status_idx")),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("status", models.CharField(max_length=20)),
        ]),
    ]
    operations = [
        migrations.AddField("order", "note", models.TextField(null=True)),
    ]
    ```
    """

    id = "L308"
    name = "locks-accumulated-in-transaction"
    severity = Severity.WARNING
    message = (
        "`{migration}` takes ACCESS EXCLUSIVE on `{table}` and holds it until COMMIT while it"
        " {later}{size}: every query on `{table}` waits meanwhile"
    )
    help = "Split the migration: one lock-taking change per migration, scans in their own"
    recipe_steps = (
        "Move the operation that takes ACCESS EXCLUSIVE on `{table}` to a migration of its"
        " own, started with `RunSQL(\"SET LOCAL lock_timeout = '3s'\")`.",
        "Put each scan, rewrite or index build in a later migration of its own (index builds:"
        " `AddIndexConcurrently` with `atomic = False`).",
        "Touch one table in S0 per migration, always in the same order across migrations.",
    )

    def check_migration(self, mctx: MigrationContext) -> Iterable[Finding]:
        if not mctx.atomic:
            return
        items = timeline(mctx.operations)
        # (table, operation index) of every ACCESS EXCLUSIVE taken so far on a table in S0.
        held: list[tuple[str, int, _Timed]] = []
        reasons: list[str] = []
        later_tables: set[str] = set()
        rows: list[int] = []
        first: _Timed | None = None
        first_table: str | None = None
        for item in items:
            step, lock = item.lock.step, item.lock
            reason = _long(item)
            mode = lock.table_mode
            if reason is None and step.hot and mode is not None and mode.blocks_writes:
                reason = f"locks `{step.table}` too ({mode.sql_name})"
            # An operation's own later statements on its own table are its own cost (L301-
            # L304 say so); a lock held from another operation, or on another table, is not.
            holders = [h for h in held if h[1] != item.ctx.index or h[0] != step.table]
            if (
                reason is not None
                and holders
                and (_long(item) is not None or all(h[0] != step.table for h in held))
            ):
                if first is None:
                    # Name the lock held across, not another lock of the same statement.
                    first, first_table = holders[0][2], holders[0][0]
                later_tables.add(step.table)
                if reason not in reasons:
                    reasons.append(reason)
                    if step.rows is not None:
                        rows.append(step.rows)
            for table, hot, taken in (
                (step.table, step.hot, lock.table_mode),
                (step.referenced_table, step.referenced_hot, lock.referenced_mode),
            ):
                blocks_reads = taken is not None and taken.blocks_reads
                if table and hot and blocks_reads and all(h[0] != table for h in held):
                    held.append((table, item.ctx.index, item))
        if first is None or not reasons:
            return
        table = first_table or first.lock.step.table
        size_rows = max(rows) if rows else first.lock.step.rows
        yield self.finding(
            first.ctx,
            severity=grade(mctx.unit, self.severity, size_rows),
            table=table,
            later=", ".join(reasons),
            size=size_text(size_rows),
            details=details(
                rows=size_rows,
                held_table=table,
                later=tuple(reasons),
                tables=tuple(sorted({table} | later_tables)),
            ),
        )
