"""L306: ACCESS EXCLUSIVE taken on a table in S0 with no lock_timeout."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge
from django_rollout.vendors import LockMode, StatementKind, facts_for

PG = facts_for("postgresql")
LOCKS = [r for r in all_rules() if r.family() == "locks"]
OTHER_APPS = {
    "auth": [migrations.CreateModel("User", [("id", models.AutoField(primary_key=True))])]
}
BEFORE = [
    migrations.CreateModel(
        "Order",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("status", models.CharField(max_length=20)),
            ("user", models.ForeignKey("auth.User", models.CASCADE, null=True)),
        ],
    ),
]
TIMEOUT = migrations.RunSQL("SET LOCAL lock_timeout = '3s'", migrations.RunSQL.noop)


def l306(operations: list[Any], **kw: Any) -> list[Finding]:
    found = judge(operations, BEFORE, other_apps=OTHER_APPS, rules=LOCKS, **kw)
    return [f for f in found if f.rule == "L306"]


FIRES = {
    "AddField": [migrations.AddField("order", "note", models.TextField(null=True))],
    "RenameField": [migrations.RenameField("order", "status", "state")],
    "RemoveField FK": [migrations.RemoveField("order", "user")],
    "RunSQL ALTER": [migrations.RunSQL('ALTER TABLE "shop_order" ADD COLUMN "x" int')],
    # Django sends a comment with an ALTER COLUMN ... TYPE of the same type.
    "AlterField db_comment": [
        migrations.AlterField(
            "order", "status", models.CharField(max_length=20, db_comment="where it is")
        )
    ],
}


@pytest.mark.parametrize("label", sorted(FIRES))
def test_flags_access_exclusive_without_timeout(label: str, django_settings: None) -> None:
    (finding,) = l306(FIRES[label])
    assert finding.severity is Severity.INFO
    assert "`shop_order`" in finding.message


def test_names_the_referenced_table_too(django_settings: None) -> None:
    assert PG.lock(StatementKind.DROP_CONSTRAINT, 17).referenced_mode is LockMode.ACCESS_EXCLUSIVE
    (finding,) = l306(FIRES["RemoveField FK"])
    assert dict(finding.details)["tables"] == ("auth_user", "shop_order")


def test_reports_once_per_migration(django_settings: None) -> None:
    operations = [*FIRES["AddField"], *FIRES["RenameField"]]
    assert len(l306(operations)) == 1


SILENT = {
    "timeout first": [TIMEOUT, *FIRES["AddField"]],
    "SET lock_timeout": [migrations.RunSQL("SET lock_timeout TO '2s'"), *FIRES["RenameField"]],
    "timeout in the same RunSQL": [
        migrations.RunSQL(
            ["SET LOCAL lock_timeout = '3s'", 'ALTER TABLE "shop_order" ADD COLUMN "x" int']
        )
    ],
    "index build takes SHARE": [
        migrations.AddIndex("order", models.Index(fields=["status"], name="s"))
    ],
    "concurrent index": [AddIndexConcurrently("order", models.Index(fields=["status"], name="s"))],
    "table new in the unit": [
        migrations.CreateModel("Coupon", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField("coupon", "code", models.TextField(null=True)),
    ],
    "state only": [migrations.SeparateDatabaseAndState(state_operations=FIRES["AddField"])],
    "AlterField help_text": [
        migrations.AlterField(
            "order", "status", models.CharField(max_length=20, help_text="where it is")
        )
    ],
}


@pytest.mark.parametrize("label", sorted(SILENT))
def test_ignores_migrations_with_timeout_or_without_access_exclusive(
    label: str, django_settings: None
) -> None:
    assert l306(SILENT[label], atomic=label != "concurrent index") == []


def test_flags_when_the_timeout_comes_too_late(django_settings: None) -> None:
    assert len(l306([*FIRES["AddField"], TIMEOUT])) == 1


def test_flags_when_the_timeout_is_switched_off(django_settings: None) -> None:
    assert len(l306([migrations.RunSQL("SET lock_timeout = 0"), *FIRES["AddField"]])) == 1


def test_ignores_sqlite(django_settings: None) -> None:
    assert l306(FIRES["AddField"], vendor="sqlite", server_version=(3, 45, 1)) == []
