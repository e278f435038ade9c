"""L301: an index built without CONCURRENTLY on a table in S0."""

from __future__ import annotations

from collections.abc import Iterable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    K,
    Lock,
    details,
    grade,
    locks_for,
    mode_name,
    size_text,
    supports,
)

_BUILDS = frozenset({K.CREATE_INDEX, K.ADD_UNIQUE_CONSTRAINT, K.ADD_PRIMARY_KEY})


def index_builds(ctx: OperationContext) -> list[Lock]:
    """Return the index builds of ``ctx`` that block writes to a table in S0."""
    return [
        lock
        for lock in locks_for(ctx)
        if lock.step.kind in _BUILDS
        and lock.step.hot
        and lock.scans
        and lock.table_mode is not None
        and lock.table_mode.blocks_writes
    ]


class IndexBuildBlocksWrites(Rule):
    """An index built without CONCURRENTLY on a table in S0.

    What it does
    ------------
    Flags every index an operation builds on a table that exists in S0 without
    ``CONCURRENTLY``: ``AddIndex``, ``db_index=True``, the index Django adds on a new foreign
    key column, the ``*_like`` pattern-ops index of a ``CharField``/``TextField``, and
    the unique index behind ``unique=True``, ``unique_together`` and ``UniqueConstraint``.
    ``RunSQL`` ``CREATE INDEX`` without ``CONCURRENTLY`` too. Silent for
    ``AddIndexConcurrently``, tables created in the same deploy unit, state-only operations
    and vendors that have no concurrent build (SQLite).

    Why it breaks production
    ------------------------
    ``CREATE INDEX`` holds a SHARE lock for the whole build: every INSERT, UPDATE and DELETE
    on the table waits until the index is built, minutes on a large table. A unique
    constraint added with ``ALTER TABLE ... ADD CONSTRAINT ... UNIQUE`` (or ``ADD COLUMN ...
    UNIQUE``) builds its index under ACCESS EXCLUSIVE: reads wait too.

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
        migrations.AddIndex("order", models.Index(fields=["status"], name="order_status_idx")),
    ]
    ```

    Use instead
    -----------
    ```python
    from django.contrib.postgres.operations import AddIndexConcurrently

    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("status", models.CharField(max_length=20)),
        ]),
    ]
    atomic = False
    operations = [
        AddIndexConcurrently("order", models.Index(fields=["status"], name="order_status_idx")),
    ]
    ```
    """

    id = "L301"
    name = "index-build-blocks-writes"
    severity = Severity.WARNING
    message = (
        "`{migration}` builds {what} on `{table}`{size} under {mode}: {blocked} wait for the"
        " whole build"
    )
    help = "Build the index with CONCURRENTLY in a non-atomic migration of its own"
    recipe_steps = (
        "Keep the model change, but in a migration of its own with `atomic = False`.",
        'Replace the index build with `AddIndexConcurrently("{model_lower}", models.Index('
        "fields=[...], name=...))` (django.contrib.postgres.operations); for `db_index=True`"
        " or a foreign key, wrap the AlterField/AddField in `SeparateDatabaseAndState` and run"
        " `CREATE INDEX CONCURRENTLY` in its `database_operations`.",
        "For uniqueness: `CREATE UNIQUE INDEX CONCURRENTLY {table}_..._uniq ON {table} (...)`,"
        " then `ALTER TABLE {table} ADD CONSTRAINT ... UNIQUE USING INDEX ...` (a brief lock),"
        " with the `AddConstraint`/`unique=True` in `state_operations`.",
        "If a concurrent build fails it leaves an INVALID index: drop it and run again.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not supports(ctx.unit, K.CREATE_INDEX_CONCURRENTLY):
            return  # nothing better exists on this vendor
        builds = index_builds(ctx)
        if not builds:
            return
        strongest = max(builds, key=lambda lock: lock.table_mode or 0)
        mode = strongest.table_mode
        rows = strongest.step.rows
        count = len(builds)
        what = "an index" if count == 1 else f"{count} indexes"
        if any(lock.step.kind is not K.CREATE_INDEX for lock in builds):
            what = "a unique index" if count == 1 else f"{count} indexes (one unique)"
        blocked = "reads and writes" if mode is not None and mode.blocks_reads else "writes"
        yield self.finding(
            ctx,
            severity=grade(ctx.unit, self.severity, rows),
            what=what,
            size=size_text(rows),
            mode=mode_name(mode),
            blocked=blocked,
            table=strongest.step.table,
            model_lower=ctx.model.name.lower() if ctx.model else "",
            details=details(rows=rows, lock=mode.pg_name if mode else None, indexes=count),
        )
