"""L302: a foreign key or check constraint validated in the statement that adds it."""

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
    migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
    migrations.CreateModel(
        "Order",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("total", models.IntegerField(null=True)),
            ("buyer_ref", models.BigIntegerField(null=True)),
            ("buyer", models.ForeignKey("Customer", models.CASCADE, null=True)),
        ],
    ),
]


def l302(operations: list[Any], **kw: Any) -> list[Finding]:
    return [f for f in judge(operations, BEFORE, rules=LOCKS, **kw) if f.rule == "L302"]


FIRES = {
    "CheckConstraint": [
        migrations.AddConstraint(
            "order", models.CheckConstraint(condition=models.Q(total__gte=0), name="c")
        )
    ],
    "AddField FK with default": [
        migrations.AddField(
            "order", "seller", models.ForeignKey("Customer", models.CASCADE, default=1)
        )
    ],
    "AddField PositiveIntegerField": [
        migrations.AddField("order", "weight", models.PositiveIntegerField(default=0))
    ],
    "AddField nullable PositiveIntegerField": [
        migrations.AddField("order", "weight", models.PositiveIntegerField(null=True))
    ],
    "AlterField to FK": [
        migrations.AlterField(
            "order",
            "buyer_ref",
            models.ForeignKey("Customer", models.CASCADE, null=True, db_column="buyer_ref"),
        )
    ],
    "AlterField FK made required": [
        migrations.AlterField("order", "buyer", models.ForeignKey("Customer", models.CASCADE))
    ],
    "AlterField to PositiveIntegerField": [
        migrations.AlterField("order", "total", models.PositiveIntegerField(null=True))
    ],
    "RunSQL CHECK": [
        migrations.RunSQL('ALTER TABLE "shop_order" ADD CONSTRAINT "c" CHECK ("total" >= 0)')
    ],
    "RunSQL FOREIGN KEY": [
        migrations.RunSQL(
            'ALTER TABLE "shop_order" ADD CONSTRAINT "f" FOREIGN KEY ("buyer_ref")'
            ' REFERENCES "shop_customer" ("id")'
        )
    ],
}


@pytest.mark.parametrize("label", sorted(FIRES))
def test_flags_constraint_validated_on_table_in_s0(label: str, django_settings: None) -> None:
    assert [f.rule for f in l302(FIRES[label])] == ["L302"]


def test_names_both_locks_of_a_foreign_key(django_settings: None) -> None:
    (finding,) = l302(FIRES["AlterField to FK"])
    fact = PG.lock(StatementKind.ADD_FOREIGN_KEY, 17)
    assert dict(finding.details)["lock"] == fact.table_mode.pg_name
    assert fact.referenced_mode is not None
    assert f"{fact.referenced_mode.sql_name} on `shop_customer`" in finding.message


def test_reports_the_add_column_lock_for_an_inline_foreign_key(django_settings: None) -> None:
    (finding,) = l302(FIRES["AddField FK with default"])
    assert dict(finding.details)["lock"] == PG.lock(StatementKind.ADD_COLUMN, 17).table_mode.pg_name


def test_grades_by_row_count(django_settings: None) -> None:
    (finding,) = l302(FIRES["CheckConstraint"], rows={"shop_order": 3_000})
    assert finding.severity is Severity.INFO
    assert "3,000 rows" in finding.message


SILENT = {
    "nullable FK column: nothing to validate": [
        migrations.AddField(
            "order", "seller", models.ForeignKey("Customer", models.CASCADE, null=True)
        )
    ],
    "db_constraint=False": [
        migrations.AddField(
            "order",
            "seller",
            models.ForeignKey("Customer", models.CASCADE, default=1, db_constraint=False),
        )
    ],
    "FK change in Python only": [
        migrations.AlterField(
            "order", "buyer", models.ForeignKey("Customer", models.PROTECT, null=True)
        )
    ],
    "NOT VALID then VALIDATE": [
        migrations.RunSQL(
            'ALTER TABLE "shop_order" ADD CONSTRAINT "c" CHECK ("total" >= 0) NOT VALID'
        ),
        migrations.RunSQL('ALTER TABLE "shop_order" VALIDATE CONSTRAINT "c"'),
    ],
    "UniqueConstraint": [
        migrations.AddConstraint("order", models.UniqueConstraint(fields=["total"], name="u"))
    ],
    "plain IntegerField": [migrations.AddField("order", "n", models.IntegerField(default=0))],
}


@pytest.mark.parametrize("label", sorted(SILENT))
def test_ignores_constraints_without_validation_scan(label: str, django_settings: None) -> None:
    assert l302(SILENT[label]) == []


def test_ignores_tables_created_in_the_unit(django_settings: None) -> None:
    created = [
        migrations.CreateModel(
            "Refund",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("amount", models.IntegerField()),
                ("order", models.ForeignKey("Order", models.CASCADE)),
            ],
        )
    ]
    check = migrations.AddConstraint(
        "refund", models.CheckConstraint(condition=models.Q(amount__gte=0), name="c")
    )
    assert l302([check], unit_before=[created]) == []
    assert l302([*created, check]) == []


def test_ignores_state_only_constraint(django_settings: None) -> None:
    operations = [migrations.SeparateDatabaseAndState(state_operations=FIRES["CheckConstraint"])]
    assert l302(operations) == []


def test_ignores_sqlite_which_cannot_split_validation(django_settings: None) -> None:
    assert l302(FIRES["CheckConstraint"], vendor="sqlite", server_version=(3, 45, 1)) == []


def _rename_before(related_name: str) -> list[Any]:
    return [
        migrations.CreateModel("Revision0", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Page",
            [
                ("id", models.BigAutoField(primary_key=True)),
                (
                    "live",
                    models.ForeignKey(
                        "Revision0", models.SET_NULL, null=True, related_name=related_name
                    ),
                ),
            ],
        ),
    ]


def test_flags_rename_model_revalidating_a_foreign_key(django_settings: None) -> None:
    findings = judge(
        [migrations.RenameModel("Revision0", "Revision")], _rename_before("pages"), rules=LOCKS
    )
    assert [f.rule for f in findings if f.rule == "L302"] == ["L302"]
    assert "`shop_page`" in next(f.message for f in findings if f.rule == "L302")


@pytest.mark.parametrize("related_name", ["+", "page_live+"])
def test_ignores_rename_model_with_hidden_foreign_key(
    related_name: str, django_settings: None
) -> None:
    """RenameModel leaves foreign keys with a hidden reverse side alone (Django walks
    ``_meta.related_objects``): nothing on the referencing table is locked or validated."""
    findings = judge(
        [migrations.RenameModel("Revision0", "Revision")],
        _rename_before(related_name),
        rules=LOCKS,
    )
    assert {f.rule for f in findings} <= {"L306"}
    assert all("shop_page" not in f.message for f in findings)
