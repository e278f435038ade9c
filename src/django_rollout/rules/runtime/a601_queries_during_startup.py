"""A601: database queries run while Django starts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import ProjectContext, StartupQuery
from django_rollout.graph.source import relative
from django_rollout.rules.base import Rule, fill

_SQL_WIDTH = 120


def _short(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= _SQL_WIDTH else text[: _SQL_WIDTH - 3] + "..."


def _shown(sql: str) -> str:
    if sql.startswith("<connection to database "):
        # The capture's marker for a connection that failed before any SQL was sent.
        return "connecting to " + sql.removeprefix("<connection to ").rstrip(">")
    return f"`{_short(sql)}`"


class QueriesDuringStartup(Rule):
    """Database queries run while Django starts (``AppConfig.ready()``, module import).

    What it does
    ------------
    Reports each place in the project's code (file and line) that ran a query, or tried to,
    while Django started: in ``AppConfig.ready()``, at module import (``models.py``,
    ``urls.py`` imported by checks, a form's ``choices=`` built from a queryset), in a signal
    connected at start-up. The check captures them while it starts Django; a query whose
    connection failed (no database reachable from CI) is reported as attempted.

    Why it breaks production
    ------------------------
    ``migrate`` starts Django too: the query runs before the migrations, against the schema
    of the previous release, and again in every process that starts during the deploy. When
    it reads a column or table the deploy adds, every ``manage.py`` command, including the
    ``migrate`` that would add it, dies with ``ProgrammingError: column ... does not exist``,
    and the deploy cannot proceed. Code that swallows the error starts with half its
    configuration instead.

    Example
    -------
    ```python
    class ShopConfig(AppConfig):
        name = "shop"

        def ready(self):
            from shop.models import Setting
            settings.SHOP_CURRENCY = Setting.objects.get(key="currency").value
    ```

    Use instead
    -----------
    ```python
    class ShopConfig(AppConfig):
        name = "shop"

    @functools.cache
    def shop_currency():  # read on first use, inside a request
        from shop.models import Setting
        return Setting.objects.get(key="currency").value
    ```
    """

    id = "A601"
    name = "queries-during-startup"
    severity = Severity.WARNING
    message = (
        "a query {verb} while Django starts ({sql}){outcome}: it runs before and during"
        " `migrate`, against a schema that may be half-migrated"
    )
    help = "Move the query out of start-up: run it lazily, on first use inside a request"
    recipe_steps = (
        "Find the query at {where}: it runs in `AppConfig.ready()` or at module import.",
        "Move it into a function called on first use (a cached property or `functools.cache`)"
        " so no query runs while Django starts.",
        "If it must run at start-up, make it tolerate a missing table or column and never run"
        " during `migrate` (check the command, or use a `post_migrate` signal).",
    )
    docs_examples_run = False  # the queries are captured while the project starts

    def check_project(self, pctx: ProjectContext) -> Iterable[Finding]:
        groups: dict[tuple[str | None, int | None], list[StartupQuery]] = {}
        for query in pctx.startup_queries:
            groups.setdefault((query.path, query.line), []).append(query)
        for (path, line), queries in groups.items():
            failed = next((q for q in queries if q.error), None)
            shown = failed or queries[0]
            reached = any(q.error is None for q in queries)
            if failed is None:
                outcome = ""
            elif shown.sql.startswith("<connection"):
                outcome = f" and could not connect: {failed.error}"
            else:
                outcome = f" and failed: {failed.error}"
            where = f"{relative(path)}:{line}" if path else "an unknown place"
            names = {
                "verb": "runs" if reached else "is attempted",
                "sql": _shown(shown.sql),
                "outcome": outcome,
                "where": where,
                "app_label": "",
                "migration": "",
                "model": "",
                "table": "",
            }
            details: dict[str, object] = {"queries": len(queries), "sql": shown.sql}
            if pctx.startup_error:
                details["startup_error"] = pctx.startup_error
            finding = self.finding(
                location=Location(relative(path), line) if path else None,
                details=details,
                message=fill(self.message, names),
                help=fill(self.help, names),
            )
            yield replace(finding, recipe=self.recipe(names))
