"""``--traffic interleaved``: the real application starts between migrations.

Servers that run ``migrate`` as they start, and servers that start while another runs it,
meet the schema half-migrated: their ``AppConfig.ready()`` and other start-up code query,
and sometimes write to, tables that the next migration is about to change (the
django-constance incident: settings rows created in a new table before the migration that
copies the old table into it). After each step of the walk, a fresh Python process starts
the project as a server would (``django.setup()`` with the project's own settings module,
its databases led to the scratch database) and then runs one round of new-code traffic
through the project's real models on every table that exists. What it hits comes back as
observations: ``action: "startup"`` for an error while Django starts, the usual actions
for the traffic round, all with ``code_version: "new"``.

The child process is this module run with ``python -m``; the parent hands it what it needs
in one environment variable and reads the result from a file, so that nothing the
application prints can be taken for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from typing import Any

from django_rollout.db.traffic import Counters, Observed, observe
from django_rollout.errors import ConfigurationError

ENVIRONMENT = "DJANGO_ROLLOUT_INTERLEAVE"
START_TIMEOUT_S = 300


def settings_module() -> str:
    """Return the project's settings module, which the child process starts from."""
    from django.conf import settings

    module = getattr(settings, "SETTINGS_MODULE", None)
    if not module:
        raise ConfigurationError(
            "--traffic interleaved starts the application in a new process: it needs a"
            " settings module (--settings or DJANGO_SETTINGS_MODULE), not settings configured"
            " in code"
        )
    return str(module)


def start_application(
    database: dict[str, Any], app_label: str, migration: str, first_row: int
) -> tuple[list[Observed], Counters]:
    """Start the application on ``database`` (every alias of its settings led there) in a
    new process, run one round of new-code traffic, and return what failed and the counts.
    ``app_label.migration`` is the next migration to run: what fails, fails before it."""
    where = {
        "app_label": app_label,
        "migration": migration,
        "code_version": "new",
        "during": "interleaved",
    }
    with tempfile.TemporaryDirectory(prefix="rollout_interleave_") as directory:
        result_file = os.path.join(directory, "result.json")
        payload = {
            "database": database,
            "where": where,
            "first_row": first_row,
            "result": result_file,
        }
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module(),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            ENVIRONMENT: json.dumps(payload, default=str),
        }
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "django_rollout.db.interleave"],
                env=env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            hung = f"the application did not start within {START_TIMEOUT_S} s"
            return [Observed(None, hung, action="startup", **where)], Counters()
        try:
            with open(result_file, encoding="utf-8") as handle:
                doc = json.load(handle)
        except (OSError, ValueError):
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            died = f"the application's process ended without a report: {last}"
            return [Observed(None, died, action="startup", **where)], Counters()
    observed = [Observed(**item) for item in doc["observed"]]
    counters = Counters(
        actions=dict(doc["actions"]), errors=dict(doc["errors"]), refused=dict(doc["refused"])
    )
    return observed, counters


def _child() -> None:
    """Start the project as a server would, on the scratch database; write the result."""
    payload = json.loads(os.environ[ENVIRONMENT])
    where = payload["where"]
    from django.conf import settings

    databases = settings.DATABASES  # loads the project's settings module, connects nothing
    for alias in {*databases, "default"}:  # never the project's own databases
        databases[alias] = dict(payload["database"])
    observed: list[Observed] = []
    counters = Counters()
    import django

    try:
        django.setup()
    except Exception as exc:  # the application does not start: what a server would hit
        observed.append(observe(exc, action="startup", **where))
    else:
        observed, counters = _traffic_round(where, int(payload["first_row"]))
    with open(payload["result"], "w", encoding="utf-8") as handle:
        json.dump(
            {
                "observed": [o.to_dict() for o in observed],
                "actions": counters.actions,
                "errors": counters.errors,
                "refused": counters.refused,
            },
            handle,
        )


def _traffic_round(where: dict[str, str], first_row: int) -> tuple[list[Observed], Counters]:
    from django.apps import apps
    from django.db import connection

    from django_rollout.db.seed import in_dependency_order
    from django_rollout.db.traffic import Traffic

    tables = set(connection.introspection.table_names())
    real = [
        m
        for m in apps.get_models()
        if m._meta.managed
        and not m._meta.proxy
        and not m._meta.swapped
        and m._meta.db_table in tables
    ]
    traffic = Traffic("default", first_row=first_row)
    found = traffic.round(in_dependency_order(real), "new", where["app_label"], where["migration"])
    return [replace(f, during=where["during"]) for f in found], traffic.counters


if __name__ == "__main__":
    _child()
