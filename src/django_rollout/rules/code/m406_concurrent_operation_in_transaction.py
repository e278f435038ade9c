"""M406: a CONCURRENTLY operation inside an atomic migration."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations
from django.db.migrations.operations.base import Operation

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.runsql import parse_sql_safe
from django_rollout.rules.base import Rule


def _refuses_transactions(op: Operation) -> bool:
    """Return True for Django's operations that refuse to run inside a transaction."""
    try:
        from django.contrib.postgres.operations import NotInTransactionMixin
    except ImportError:  # psycopg missing: the operations cannot be used either
        return False
    return isinstance(op, NotInTransactionMixin)


def concurrent_statements(op: Operation, vendor: str) -> list[str]:
    """Return the statements of ``op`` that PostgreSQL runs only outside a transaction."""
    if _refuses_transactions(op):
        return [type(op).__name__]
    if isinstance(op, migrations.RunSQL):
        actions, _error = parse_sql_safe(op.sql, vendor)
        # SQL that does not parse is reported elsewhere; nothing is known about it here.
        return [" ".join(a.sql.split()) for a in actions if a.concurrently]
    return []


class ConcurrentOperationInTransaction(Rule):
    """A CONCURRENTLY operation in an atomic migration: it fails before it starts.

    What it does
    ------------
    Flags ``AddIndexConcurrently`` and ``RemoveIndexConcurrently``
    (``django.contrib.postgres.operations``) and ``RunSQL`` holding ``CREATE INDEX
    CONCURRENTLY``, ``DROP INDEX CONCURRENTLY``, ``REINDEX ... CONCURRENTLY`` or ``ALTER TABLE
    ... DETACH PARTITION ... CONCURRENTLY`` in a migration that is atomic (the default). On
    other vendors than PostgreSQL it stays silent.

    Why it breaks production
    ------------------------
    An atomic migration runs inside one transaction, and PostgreSQL refuses these statements
    there: ``ActiveSqlTransaction: CREATE INDEX CONCURRENTLY cannot run inside a transaction
    block``. Django's own operations refuse earlier with ``NotSupportedError: The
    AddIndexConcurrently operation cannot be executed inside a transaction (set atomic = False
    on the migration)``. The deploy stops at this migration, after the migrations before it.

    Example
    -------
    ```python
    from django.contrib.postgres.operations import AddIndexConcurrently

    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField()),
        ]),
    ]
    operations = [
        AddIndexConcurrently("order", models.Index(fields=["placed_at"], name="order_placed_idx")),
    ]
    ```

    Use instead
    -----------
    ```python
    from django.contrib.postgres.operations import AddIndexConcurrently

    atomic = False
    before = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField()),
        ]),
    ]
    operations = [
        AddIndexConcurrently("order", models.Index(fields=["placed_at"], name="order_placed_idx")),
    ]
    ```
    """

    id = "M406"
    sqlstates = ("25",)
    name = "concurrent-operation-in-transaction"
    severity = Severity.ERROR
    message = (
        "`{statement}` runs inside the transaction of atomic migration `{migration}`: PostgreSQL"
        " refuses it (`cannot run inside a transaction block`) and the deploy stops here"
    )
    help = "Set `atomic = False` on `{migration}` and keep the concurrent operation alone in it"
    recipe_steps = (
        "Move the concurrent operation into a migration of its own, after `{migration}`'s other"
        " operations (they keep their transaction).",
        "Set `atomic = False` on that migration: `class Migration(migrations.Migration):"
        " atomic = False`.",
        "Make it re-runnable: a failed concurrent build leaves an INVALID index, so use `IF NOT"
        " EXISTS` / `IF EXISTS` in RunSQL, or drop the invalid index before retrying.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database or not ctx.atomic or ctx.unit.vendor != "postgresql":
            return
        for statement in concurrent_statements(ctx.operation, ctx.unit.vendor):
            if len(statement) > 120:
                statement = statement[:117] + "..."
            yield self.finding(ctx, statement=statement)
