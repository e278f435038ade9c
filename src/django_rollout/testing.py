"""Judge migrations built in memory: for rule tests, docs examples and user test suites.

No app registry entry and no database are needed: the walk only uses ``ProjectState``.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.db import migrations
from django.db.migrations.operations.base import Operation

from django_rollout.conf import Config
from django_rollout.findings import Finding
from django_rollout.graph.walk import Walker, WalkSettings
from django_rollout.rules.base import Rule
from django_rollout.rules.registry import all_rules


def ensure_settings() -> None:
    """Configure minimal Django settings if nothing configured them yet, then set up Django.

    Rule tests need no database and no apps: the walk works on ProjectState alone. Call it
    from a fixture, not at import, so that suites configuring their own settings still can.
    """
    import django
    from django.apps import apps
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django.contrib.postgres",
            ],
            DATABASES={},
            USE_TZ=True,
            TIME_ZONE="UTC",
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
    if not apps.ready:
        django.setup()


def make_migration(
    app_label: str,
    name: str,
    operations: Sequence[Operation],
    *,
    atomic: bool = True,
    dependencies: Sequence[tuple[str, str]] = (),
    attrs: Mapping[str, Any] | None = None,
) -> migrations.Migration:
    cls = type(
        "Migration",
        (migrations.Migration,),
        {
            "operations": list(operations),
            "atomic": atomic,
            "dependencies": list(dependencies),
            **(attrs or {}),
        },
    )
    return cls(name, app_label)


def judge(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    *,
    app_label: str = "shop",
    other_apps: Mapping[str, Sequence[Operation]] | None = None,
    atomic: bool = True,
    rows: Mapping[str, int] | None = None,
    vendor: str = "postgresql",
    server_version: tuple[int, ...] = (17,),
    rules: Sequence[type[Rule]] | None = None,
    config: Config | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
    startup_tables: frozenset[str] | None = frozenset(),
) -> list[Finding]:
    """Return the findings for ``operations`` judged against a deployed ``before``.

    ``other_apps`` are deployed first (e.g. ``{"auth": [CreateModel("User", ...)]}``).
    ``unit_before`` are earlier migrations of the same deploy unit (judged together with
    ``operations`` as one unit, like ``--since``); only the last migration is reported.
    ``startup_tables`` are the tables start-up queries named (None: start-up could not
    connect, so unknown).
    """
    deployed: list[migrations.Migration] = []
    for label, ops in (other_apps or {}).items():
        deployed.append(make_migration(label, "0001_initial", ops))
    if before:
        deployed.append(make_migration(app_label, "0001_initial", before))
    unit = [
        make_migration(app_label, f"{i + 2:04d}_unit", ops) for i, ops in enumerate(unit_before)
    ]
    target = make_migration(app_label, f"{len(unit) + 2:04d}_change", operations, atomic=atomic)
    unit.append(target)
    walker = Walker(
        [r() for r in (rules if rules is not None else all_rules())],
        WalkSettings(
            config or Config(), vendor, server_version, rows, startup_tables=startup_tables
        ),
        judged=lambda key: key == (app_label, target.name),
    )
    return walker.as_one_unit(deployed, unit)


def rule_ids(findings: Sequence[Finding], at_least: str = "info") -> set[str]:
    from django_rollout.findings import Severity

    floor = Severity.parse(at_least)
    return {f.rule for f in findings if f.rule and f.severity >= floor}


def load_example(code: str) -> dict[str, Any]:
    """Import a docs example from a real file, so that RunPython source is inspectable."""
    folder = Path(tempfile.mkdtemp(prefix="rollout-example-"))
    name = f"rollout_example_{uuid.uuid4().hex[:12]}"
    path = folder / f"{name}.py"
    header = "from django.db import migrations, models\nfrom django.db.models import Q, F\n"
    path.write_text(header + code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return vars(module)


def judge_example(code: str, rules: Sequence[type[Rule]] | None = None) -> list[Finding]:
    """Judge a docs example: it defines ``operations`` and optionally ``before``,
    ``other_apps``, ``unit_before``, ``rows``, ``atomic`` and ``app_label``."""
    ns = load_example(code)
    return judge(
        ns["operations"],
        ns.get("before", ()),
        app_label=ns.get("app_label", "shop"),
        other_apps=ns.get("other_apps"),
        atomic=ns.get("atomic", True),
        rows=ns.get("rows"),
        unit_before=ns.get("unit_before", ()),
        rules=rules,
    )
