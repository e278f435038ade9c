"""L303: a change that rewrites the table under an exclusive lock."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge
from django_rollout.vendors import StatementKind, facts_for

PG = facts_for("postgresql")
LOCKS = [r for r in all_rules() if r.family() == "locks"]
BEFORE = [
    migrations.CreateModel(
        "Payment",
        [
            ("id", models.AutoField(primary_key=True)),
            ("amount", models.IntegerField()),
            ("ref", models.CharField(max_length=20)),
            ("price", models.DecimalField(max_digits=8, decimal_places=2)),
            ("paid_at", models.DateTimeField(null=True)),
            ("data", models.JSONField(null=True)),
        ],
    ),
]


def l303(operations: list[Any], **kw: Any) -> list[Finding]:
    return [f for f in judge(operations, BEFORE, rules=LOCKS, **kw) if f.rule == "L303"]


FIRES = {
    "int to bigint": [migrations.AlterField("payment", "amount", models.BigIntegerField())],
    "char to int": [migrations.AlterField("payment", "ref", models.IntegerField())],
    "shorter varchar": [migrations.AlterField("payment", "ref", models.CharField(max_length=10))],
    "smaller scale": [
        migrations.AlterField(
            "payment", "price", models.DecimalField(max_digits=8, decimal_places=1)
        )
    ],
    "volatile db_default": [
        migrations.AddField(
            "payment", "token", models.UUIDField(db_default=models.Func(function="gen_random_uuid"))
        )
    ],
    "stored GeneratedField": [
        migrations.AddField(
            "payment",
            "double",
            models.GeneratedField(
                expression=models.F("amount") * 2,
                output_field=models.IntegerField(),
                db_persist=True,
            ),
        )
    ],
    "RunSQL ALTER TYPE": [
        migrations.RunSQL('ALTER TABLE "shop_payment" ALTER COLUMN "amount" TYPE bigint')
    ],
    "RunSQL ALTER TYPE of an unknown column": [
        migrations.RunSQL('ALTER TABLE "shop_payment" ALTER COLUMN "legacy" TYPE bigint')
    ],
}


@pytest.mark.parametrize("label", sorted(FIRES))
def test_flags_rewrite_of_table_in_s0(label: str, django_settings: None) -> None:
    assert [f.rule for f in l303(FIRES[label])] == ["L303"]


def test_reports_the_lock_and_the_types(django_settings: None) -> None:
    (finding,) = l303(FIRES["int to bigint"], rows={"shop_payment": 20_000_000})
    fact = PG.lock(StatementKind.ALTER_COLUMN_TYPE, 17)
    assert fact.rewrites
    assert dict(finding.details)["lock"] == fact.table_mode.pg_name
    assert dict(finding.details)["old_type"] == "integer"
    assert finding.severity is Severity.ERROR


SILENT = {
    "longer varchar": [migrations.AlterField("payment", "ref", models.CharField(max_length=200))],
    "varchar to text": [migrations.AlterField("payment", "ref", models.TextField())],
    "more precision": [
        migrations.AlterField(
            "payment", "price", models.DecimalField(max_digits=12, decimal_places=2)
        )
    ],
    "same type, new help_text": [
        migrations.AlterField("payment", "amount", models.IntegerField(help_text="x"))
    ],
    "stable db_default": [
        migrations.AddField(
            "payment", "seen_at", models.DateTimeField(db_default=models.functions.Now())
        )
    ],
    "literal db_default": [
        migrations.AddField("payment", "ok", models.BooleanField(db_default=False))
    ],
    "json field added": [migrations.AddField("payment", "meta", models.JSONField(null=True))],
    "RunSQL widening": [
        migrations.RunSQL('ALTER TABLE "shop_payment" ALTER COLUMN "ref" TYPE varchar(100)')
    ],
}


@pytest.mark.parametrize("label", sorted(SILENT))
def test_ignores_changes_done_in_place(label: str, django_settings: None) -> None:
    assert l303(SILENT[label]) == []


def test_ignores_tables_created_in_the_unit(django_settings: None) -> None:
    created = [
        migrations.CreateModel(
            "Fee", [("id", models.AutoField(primary_key=True)), ("n", models.IntegerField())]
        )
    ]
    change = migrations.AlterField("fee", "n", models.BigIntegerField())
    assert l303([change], unit_before=[created]) == []


def test_ignores_state_only_change(django_settings: None) -> None:
    operations = [migrations.SeparateDatabaseAndState(state_operations=FIRES["int to bigint"])]
    assert l303(operations) == []


def test_says_sqlite_rebuilds_the_table(django_settings: None) -> None:
    (finding,) = l303(FIRES["int to bigint"], vendor="sqlite", server_version=(3, 45, 1))
    assert "rebuilds the table" in finding.message
    mode = facts_for("sqlite").lock(StatementKind.ALTER_COLUMN_TYPE, 34501).table_mode
    assert dict(finding.details)["lock"] == mode.pg_name
