"""M409: a migration's SQL that cannot be produced without a database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule, fill


class SqlNotCollectedOffline(Rule):
    """The SQL of a migration cannot be produced without a database.

    What it does
    ------------
    Reports, with ``check --sql``, each migration whose statements could not be collected
    offline (an operation that needs a live connection to format its SQL, a custom schema
    editor, ``RunPython`` that runs its own queries). The check emits it; the migration is
    still judged, from its operations alone.

    Why it breaks production
    ------------------------
    Nothing breaks by itself, but the exact statements, and so the lock trace and the rules
    that quote SQL, are missing for this migration: review its SQL on a copy of the database
    with ``sqlmigrate`` or a rehearsal before deploying it.

    Example
    -------
    ```python
    # an operation whose database_forwards queries the database to build its SQL
    operations = [RebuildPartitions("shop_event")]
    ```

    Use instead
    -----------
    ```python
    # review the statements on a copy of the database, or rehearse the deploy:
    #   python manage.py sqlmigrate shop 0009
    #   django-rollout rehearse --database staging
    operations = [RebuildPartitions("shop_event")]
    ```
    """

    id = "M409"
    name = "sql-not-collected-offline"
    severity = Severity.INFO
    message = (
        "the SQL of `{migration}` cannot be produced without a database: {error}; it was"
        " judged from its operations only"
    )
    help = "Review its SQL with `manage.py sqlmigrate {app_label} {migration}` on a real database"
    recipe_steps = (
        "Print the statements against a copy of the database: `python manage.py sqlmigrate"
        " {app_label} {migration}`.",
        "Or rehearse the deploy on a scratch copy: `django-rollout rehearse`.",
    )
    docs_examples_run = False  # emitted by `check --sql`

    def finding(
        self,
        ctx: OperationContext | None = None,
        *,
        app_label: str | None = None,
        migration: str | None = None,
        **names: Any,
    ) -> Finding:
        """Build the finding, filling ``{app_label}`` and ``{migration}`` from the keywords
        the check passes (``Rule.finding`` fills them only from an operation context)."""
        if ctx is not None:
            return super().finding(ctx, app_label=app_label, migration=migration, **names)
        filled = {"app_label": app_label or "", "migration": migration or "", **names}
        finding = super().finding(
            app_label=app_label,
            migration=migration,
            message=fill(self.message, filled),
            help=fill(self.help, filled),
            **names,
        )
        return replace(finding, recipe=self.recipe(filled))
