"""L307: a lock on the table a foreign key points to."""

from __future__ import annotations

from typing import Any

import pytest
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
            ("user", models.ForeignKey("auth.User", models.CASCADE, null=True)),
            ("user_ref", models.IntegerField(null=True)),
            ("parent", models.ForeignKey("self", models.CASCADE, null=True)),
            ("watchers", models.ManyToManyField("auth.User", related_name="+")),
        ],
    ),
]


def l307(operations: list[Any], **kw: Any) -> list[Finding]:
    found = judge(operations, BEFORE, other_apps=OTHER_APPS, rules=LOCKS, **kw)
    return [f for f in found if f.rule == "L307"]


DROPS = {
    "RemoveField FK": [migrations.RemoveField("order", "user")],
    "AlterField FK to integer": [
        migrations.AlterField("order", "user", models.IntegerField(null=True, db_column="user_id"))
    ],
    "db_constraint=False": [
        migrations.AlterField(
            "order",
            "user",
            models.ForeignKey("auth.User", models.CASCADE, null=True, db_constraint=False),
        )
    ],
    "DeleteModel": [migrations.DeleteModel("order")],
    "RemoveField M2M": [migrations.RemoveField("order", "watchers")],
}


@pytest.mark.parametrize("label", sorted(DROPS))
def test_flags_access_exclusive_on_the_referenced_table(label: str, django_settings: None) -> None:
    assert PG.lock(StatementKind.DROP_CONSTRAINT, 17).referenced_mode is LockMode.ACCESS_EXCLUSIVE
    (finding,) = l307(DROPS[label])
    assert dict(finding.details)["referenced_table"] == "auth_user"
    assert dict(finding.details)["lock"] == LockMode.ACCESS_EXCLUSIVE.pg_name
    # The message names the column, or says the dropped table takes its foreign keys along.
    expected = (
        "(dropped with its foreign keys) points to"
        if label in ("DeleteModel", "RemoveField M2M")  # the table, or its through table
        else "`shop_order`.`user_id` points to"
    )
    assert expected in finding.message and "(foreign keys)`" not in finding.message


def test_grades_a_drop_by_the_referenced_table_size(django_settings: None) -> None:
    (finding,) = l307(DROPS["RemoveField FK"], rows={"auth_user": 3_000_000, "shop_order": 10})
    assert finding.severity is Severity.ERROR


ADDS = {
    "AlterField integer to FK": [
        migrations.AlterField(
            "order",
            "user_ref",
            models.ForeignKey("auth.User", models.CASCADE, null=True, db_column="user_ref"),
        )
    ],
    "AddField FK with default": [
        migrations.AddField(
            "order", "owner", models.ForeignKey("auth.User", models.CASCADE, default=1)
        )
    ],
    "FK made required": [
        migrations.AlterField("order", "user", models.ForeignKey("auth.User", models.CASCADE))
    ],
}


@pytest.mark.parametrize("label", sorted(ADDS))
def test_flags_validated_foreign_key_locking_the_referenced_table(
    label: str, django_settings: None
) -> None:
    found = l307(ADDS[label])
    assert found and all(dict(f.details)["referenced_table"] == "auth_user" for f in found)
    modes = {dict(f.details)["lock"] for f in found}
    fact = PG.lock(StatementKind.ADD_FOREIGN_KEY, 17)
    assert fact.referenced_mode is not None and fact.referenced_mode.blocks_writes
    assert modes <= {fact.referenced_mode.pg_name, LockMode.ACCESS_EXCLUSIVE.pg_name}


SILENT = {
    "new nullable FK column": [
        migrations.AddField(
            "order", "owner", models.ForeignKey("auth.User", models.CASCADE, null=True)
        )
    ],
    "new table with FK": [
        migrations.CreateModel(
            "Refund",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("by", models.ForeignKey("auth.User", models.CASCADE)),
            ],
        )
    ],
    "new M2M": [
        migrations.AddField("order", "tags", models.ManyToManyField("auth.User", related_name="+"))
    ],
    "python-only FK change": [
        migrations.AlterField(
            "order", "user", models.ForeignKey("auth.User", models.PROTECT, null=True)
        )
    ],
    "self reference dropped": [migrations.RemoveField("order", "parent")],
    "plain column dropped": [migrations.RemoveField("order", "user_ref")],
    "state only": [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField("order", "user")]
        )
    ],
}


@pytest.mark.parametrize("label", sorted(SILENT))
def test_ignores_brief_or_absent_referenced_locks(label: str, django_settings: None) -> None:
    assert l307(SILENT[label]) == []


def test_ignores_referenced_table_new_in_the_unit(django_settings: None) -> None:
    created = [
        migrations.CreateModel("Team", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField("order", "team", models.ForeignKey("Team", models.CASCADE, null=True)),
    ]
    assert l307([migrations.RemoveField("order", "team")], unit_before=[created]) == []


def test_ignores_sqlite(django_settings: None) -> None:
    assert l307(DROPS["RemoveField FK"], vendor="sqlite", server_version=(3, 45, 1)) == []
