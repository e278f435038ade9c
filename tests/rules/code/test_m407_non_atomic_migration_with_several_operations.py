from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from django_rollout.findings import Severity
from django_rollout.rules.code.m407_non_atomic_migration_with_several_operations import (
    NonAtomicMigrationWithSeveralOperations,
    atomic_location,
)
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

CODE_RULES = [r for r in all_rules() if r.family() == "code"]
M407 = [NonAtomicMigrationWithSeveralOperations]
NOOP = migrations.RunSQL.noop
BEFORE = [
    migrations.CreateModel(
        "Order",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField()),
        ],
    )
]


def index(name: str) -> AddIndexConcurrently:
    return AddIndexConcurrently("order", models.Index(fields=["placed_at"], name=name))


def backfill(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    Order.objects.filter(note__isnull=True).update(note="")


SEVERAL = {
    "two-concurrent-indexes": [index("a_idx"), index("b_idx")],
    "addfield-and-index": [
        migrations.AddField("order", "note", models.TextField(null=True)),
        index("a_idx"),
    ],
    "runpython-and-alterfield": [
        migrations.AddField("order", "note", models.TextField(null=True)),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField("order", "note", models.TextField(default="")),
    ],
    "foreign-key-and-index": [
        migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField(
            "order", "customer", models.ForeignKey("shop.Customer", models.CASCADE, null=True)
        ),
    ],
    "set-timeout-and-two-sql": [
        migrations.RunSQL("SET lock_timeout = '2s'", NOOP),
        migrations.RunSQL("CREATE INDEX CONCURRENTLY x ON shop_order (id)", NOOP),
        migrations.RunSQL("CREATE INDEX CONCURRENTLY y ON shop_order (placed_at)", NOOP),
    ],
    "database-operations-of-separate": [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL("CREATE INDEX CONCURRENTLY x ON shop_order (id)", NOOP),
                migrations.RunSQL("CREATE INDEX CONCURRENTLY y ON shop_order (placed_at)", NOOP),
            ]
        )
    ],
    "unparsable-sql-counts": [
        migrations.RunSQL("SET lock_timeout TO oops oops", NOOP),
        index("a_idx"),
    ],
}


@pytest.mark.parametrize("operations", SEVERAL.values(), ids=SEVERAL.keys())
def test_flags_non_atomic_migration_with_several_database_operations(operations: Any) -> None:
    findings = judge(operations, BEFORE, atomic=False, rules=CODE_RULES)
    # Info-level advice (M410 on SQL the parser cannot read) may accompany it.
    findings = [f for f in findings if f.severity >= Severity.WARNING]
    assert {f.rule for f in findings} == {"M407"}
    [finding] = findings
    assert finding.migration == "0002_change" and finding.app_label == "shop"
    assert "non-atomic migration `0002_change`" in finding.message
    assert "{" not in finding.message + finding.help + "".join(finding.recipe)


@pytest.mark.parametrize("operations", SEVERAL.values(), ids=SEVERAL.keys())
def test_ignores_atomic_migration(operations: Any) -> None:
    findings = judge(operations, BEFORE, rules=M407)
    assert findings == []


SINGLE = {
    "one-concurrent-index": [index("a_idx")],
    "one-runpython": [migrations.RunPython(backfill, migrations.RunPython.noop)],
    "timeouts-then-index": [
        migrations.RunSQL("SET lock_timeout = '2s'", NOOP),
        migrations.RunSQL("SET statement_timeout = 0", NOOP),
        index("a_idx"),
    ],
    "index-with-state-only-companion": [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL("CREATE INDEX CONCURRENTLY x ON shop_order (id)", NOOP)
            ],
            state_operations=[
                migrations.AddIndex("order", models.Index(fields=["id"], name="x")),
                migrations.AlterModelOptions("order", {"ordering": ["id"]}),
            ],
        )
    ],
    "noop-runpython-and-noop-sql": [
        migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop),
        migrations.RunSQL(NOOP, NOOP),
        index("a_idx"),
    ],
    "nothing": [],
}


@pytest.mark.parametrize("operations", SINGLE.values(), ids=SINGLE.keys())
def test_ignores_non_atomic_migration_with_one_database_change(operations: Any) -> None:
    assert judge(operations, BEFORE, atomic=False, rules=CODE_RULES) == []


def test_points_at_the_atomic_false_line(tmp_path: Path) -> None:
    path = tmp_path / "rollout_m407_fixture.py"
    path.write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = []\n"
        "    atomic = False\n"
        "    operations = []\n",
        encoding="utf-8",
    )
    spec = importlib.util.spec_from_file_location("rollout_m407_fixture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        location = atomic_location(module.Migration("0003_x", "shop"))
    finally:
        del sys.modules[spec.name]
    assert location is not None and location.line == 6
    assert location.path is not None and location.path.endswith("rollout_m407_fixture.py")
