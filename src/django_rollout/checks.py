"""Django system checks: code older than the database, where people will see it.

Tagged ``database``: Django runs it only when told which databases to check
(``manage.py check --database default``, and ``migrate`` for the database it migrates),
never at start-up, so it adds no query to start-up (that would be A601 itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core import checks

CHECK_ID = "django_rollout.W503"


@checks.register(checks.Tags.database)  # type: ignore[untyped-decorator]
def code_older_than_database(
    app_configs: Sequence[Any] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """Warn when a database has applied migrations this code does not have (H503)."""
    from django_rollout.db.history import code_age, load_for, read
    from django_rollout.errors import RolloutError

    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        try:
            history = read(alias, schema=False)
            findings = code_age(history, load_for(history))
        except RolloutError:
            continue  # no django_migrations yet, or unreachable: migrate says so itself
        for finding in findings:
            if finding.rule != "H503" or str(finding.severity) != "error":
                continue
            messages.append(
                checks.Warning(
                    f"database {alias!r}: {finding.message.replace('`', '')}",
                    hint=finding.help.replace("`", ""),
                    id=CHECK_ID,
                )
            )
    return messages
