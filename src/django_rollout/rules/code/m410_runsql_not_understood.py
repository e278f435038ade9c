"""M410: RunSQL whose SQL cannot be parsed, so no rule could judge it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.runsql import parse_sql_safe
from django_rollout.rules.base import Rule


class RunSqlNotUnderstood(Rule):
    """RunSQL whose statements cannot be parsed: its locks and schema changes went unjudged.

    What it does
    ------------
    Reports, as info, a ``RunSQL`` whose forwards SQL the PostgreSQL parser (``pglast``) cannot
    read, so that no rule could see what it drops, renames, locks or rewrites. Nothing is
    skipped silently: the gap is named.

    Why it breaks production
    ------------------------
    It may not: the point is that nobody checked. A ``DROP COLUMN`` or ``CREATE INDEX`` hidden
    in SQL the tool cannot read breaks production as surely as one written with operations.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [("id", models.BigAutoField(primary_key=True))]),
    ]
    operations = [
        migrations.RunSQL("ALTER TABLE shop_product FROBNICATE;", migrations.RunSQL.noop),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Product", [("id", models.BigAutoField(primary_key=True))]),
    ]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE shop_product ADD COLUMN note text NULL;",
            "ALTER TABLE shop_product DROP COLUMN note;",
        ),
    ]
    ```
    """

    id = "M410"
    name = "runsql-not-understood"
    severity = Severity.INFO
    message = "the SQL of this RunSQL cannot be parsed ({error}): no rule judged what it does"
    help = "Review its locks and schema changes by hand, or express it with operations"
    recipe_steps = (
        "Check the statement in `{migration}` against the catalogue by hand (drops, renames,"
        " index builds, NOT NULL, type changes), or rewrite it with migration operations.",
        "If it is PostgreSQL-specific syntax the parser misses, keep it and suppress M410 on"
        " the migration with the reason.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database or not isinstance(ctx.operation, migrations.RunSQL):
            return
        if ctx.unit.vendor != "postgresql":
            # The parser speaks PostgreSQL; SQL written for another engine is not a gap here.
            return
        _, error = parse_sql_safe(ctx.operation.sql, ctx.unit.vendor)
        if error is not None:
            yield self.finding(ctx, error=str(error).rstrip("."))
