"""M407: a non-atomic migration with several operations."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from typing import Any

from django.db import migrations

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import MigrationContext, OperationContext
from django_rollout.graph.runsql import parse_sql_safe
from django_rollout.graph.source import module_tree, relative
from django_rollout.rules.base import Rule, fill
from django_rollout.vendors.base import StatementKind

# Session settings change no schema and no rows: a re-run after a failure repeats them safely.
_SESSION_ONLY = frozenset({StatementKind.SET_LOCK_TIMEOUT, StatementKind.SET_STATEMENT_TIMEOUT})


def changes_database(ctx: OperationContext) -> bool:
    """Return False for operations that leave no trace a failed half-run could strand."""
    if not ctx.database:
        return False
    op = ctx.operation
    if isinstance(op, migrations.SeparateDatabaseAndState):
        return False  # its database operations are contexts of their own
    if isinstance(op, migrations.RunPython):
        return op.code is not migrations.RunPython.noop
    if isinstance(op, migrations.RunSQL):
        actions, error = parse_sql_safe(op.sql, ctx.unit.vendor)
        if error is not None:
            return True
        return not all(a.kind in _SESSION_ONLY for a in actions)
    return True


def migration_finding(
    rule: Rule,
    app_label: str,
    migration: str,
    *,
    location: Location | None = None,
    details: dict[str, Any] | None = None,
    **names: Any,
) -> Finding:
    """Build a finding about a whole migration, with ``{app_label}`` and ``{migration}``
    filled in the message, help and recipe (``Rule.finding`` fills them only from a ctx)."""
    filled = {"app_label": app_label, "migration": migration, "model": "", "table": "", **names}
    finding = rule.finding(
        app_label=app_label,
        migration=migration,
        location=location,
        details=details,
        message=fill(rule.message, filled),
        help=fill(rule.help, filled),
    )
    return replace(finding, recipe=rule.recipe(filled))


@lru_cache(maxsize=256)
def _atomic_line(path: str) -> int | None:
    """Return the line of ``atomic = False`` in a migration file."""
    tree = module_tree(path)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "atomic" for t in node.targets
        ):
            return node.lineno
    return None


def atomic_location(migration: migrations.Migration) -> Location | None:
    module = sys.modules.get(type(migration).__module__)
    path = getattr(module, "__file__", None)
    if not path:
        return None
    line = _atomic_line(str(path))
    return Location(relative(str(path)), line) if line else None


class NonAtomicMigrationWithSeveralOperations(Rule):
    """A non-atomic migration with several operations: a failure leaves it half-applied.

    What it does
    ------------
    Flags a migration with ``atomic = False`` that holds more than one operation changing the
    database. Operations that change nothing a failure could strand do not count: state-only
    operations (``SeparateDatabaseAndState`` without database operations), ``RunPython.noop``
    and ``RunSQL`` that only sets ``lock_timeout`` or ``statement_timeout`` for the session.

    Why it breaks production
    ------------------------
    Without a transaction every operation commits on its own. When the third operation fails
    (a lock timeout, an invalid concurrent index, a duplicate), the first two stay applied but
    the migration is not recorded, and Django's deferred SQL for them (foreign key
    constraints, indexes it creates at the end of the migration) never runs. The re-run starts
    from the first operation again and fails on what already exists (``relation ... already
    exists``), and the schema lacks constraints nobody notices are missing.

    Example
    -------
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
        migrations.AddField("order", "note", models.TextField(null=True)),
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
            ("note", models.TextField(null=True)),
        ]),
    ]
    operations = [
        migrations.RunSQL("SET lock_timeout = '5s'", reverse_sql=migrations.RunSQL.noop),
        AddIndexConcurrently("order", models.Index(fields=["placed_at"], name="order_placed_idx")),
    ]
    ```
    """

    id = "M407"
    name = "non-atomic-migration-with-several-operations"
    severity = Severity.WARNING
    message = (
        "non-atomic migration `{migration}` runs {count} operations that each commit on their"
        " own: a failure half-applies it, drops Django's deferred SQL and breaks the re-run"
    )
    help = "Keep only the operation that needs `atomic = False` in `{migration}`; move the rest"
    recipe_steps = (
        "Keep in `{migration}` (atomic = False) only the operation that cannot run in a"
        " transaction ({first}).",
        "Move the other operations ({others}) into an atomic migration before or after it.",
        "Make the non-atomic operation re-runnable (`IF NOT EXISTS`, or drop an INVALID index"
        " left by a failed concurrent build before retrying).",
    )

    def check_migration(self, mctx: MigrationContext) -> Iterable[Finding]:
        if mctx.atomic:
            return
        changing = [ctx for ctx in mctx.operations if changes_database(ctx)]
        if len(changing) < 2:
            return
        names = [f"#{c.index} {type(c.operation).__name__}" for c in changing]
        yield migration_finding(
            self,
            mctx.app_label,
            str(mctx.migration.name),
            location=atomic_location(mctx.migration),
            details={"operations": tuple(names)},
            count=len(changing),
            first=names[0],
            others=", ".join(names[1:]),
        )
