"""L306: ACCESS EXCLUSIVE taken on a table in S0 with no lock_timeout."""

from __future__ import annotations

from collections.abc import Iterable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import MigrationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    K,
    details,
    locks_for,
    sql_actions,
    supports,
)


def _blocks_everything(mode: object) -> bool:
    return getattr(mode, "blocks_reads", False)


def _sets_lock_timeout(value: str | None) -> bool:
    text = (value or "").strip().strip("'\"").lower()
    return text not in ("", "0", "default")


class AccessExclusiveWithoutLockTimeout(Rule):
    """ACCESS EXCLUSIVE taken on a table in S0 with no lock_timeout.

    What it does
    ------------
    Reports, once per migration, the tables in S0 on which the migration takes a lock that
    blocks reads (ACCESS EXCLUSIVE: almost every ``ALTER TABLE``, including the brief
    ones, and ``DROP``/``ALTER`` of a foreign key on the table it points to) when no
    ``SET lock_timeout`` (or ``SET LOCAL lock_timeout``) runs before it in the migration.
    Silent when nothing takes such a lock on a table in S0, and on vendors without a lock
    timeout (SQLite).

    Why it breaks production
    ------------------------
    The lock waits behind any transaction that has touched the table (a report, a stuck
    worker, an idle-in-transaction session), and while it waits every new query on the
    table queues behind it: a one-millisecond ``ALTER TABLE`` becomes minutes of outage.
    With ``lock_timeout`` the migration fails fast instead and can be retried.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
        ]),
    ]
    operations = [
        migrations.AddField("product", "note", models.TextField(null=True)),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
        ]),
    ]
    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '3s'", migrations.RunSQL.noop),
        migrations.AddField("product", "note", models.TextField(null=True)),
    ]
    ```
    """

    id = "L306"
    name = "access-exclusive-without-lock-timeout"
    severity = Severity.INFO
    message = (
        "`{migration}` takes ACCESS EXCLUSIVE on {tables} with no lock_timeout: it queues"
        " behind any open transaction and every query on {them} queues behind it"
    )
    help = "Set lock_timeout at the start of the migration (or in the deploy's connection)"
    recipe_steps = (
        "Start the migration with `migrations.RunSQL(\"SET LOCAL lock_timeout = '3s'\","
        " migrations.RunSQL.noop)` (LOCAL: it ends with the migration's transaction).",
        'Or set it for the whole deploy: `OPTIONS: {{"options": "-c lock_timeout=3s"}}`'
        " in the DATABASES entry the deploy migrates with.",
        "Run the deploy with a retry: a timeout means a long transaction held the table;"
        " retrying a few seconds later usually succeeds.",
    )

    def check_migration(self, mctx: MigrationContext) -> Iterable[Finding]:
        if not supports(mctx.unit, K.SET_LOCK_TIMEOUT):
            return
        tables: dict[str, int | None] = {}
        first = None
        for ctx in mctx.operations:
            if not tables and any(
                a.kind is K.SET_LOCK_TIMEOUT and _sets_lock_timeout(a.value)
                for a in sql_actions(ctx)
            ):
                return  # the timeout is set before anything blocks
            for lock in locks_for(ctx):
                step = lock.step
                if step.hot and _blocks_everything(lock.table_mode):
                    tables.setdefault(step.table, step.rows)
                    first = first or ctx
                if (
                    step.referenced_table
                    and step.referenced_hot
                    and _blocks_everything(lock.referenced_mode)
                ):
                    tables.setdefault(step.referenced_table, None)
                    first = first or ctx
        if not tables or first is None:
            return
        names = sorted(tables)
        yield self.finding(
            first,
            tables=", ".join(f"`{t}`" for t in names),
            them="them" if len(names) > 1 else "it",
            details=details(tables=tuple(names)),
        )
