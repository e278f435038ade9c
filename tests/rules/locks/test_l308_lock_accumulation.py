"""L308: locks accumulated in one atomic migration."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

LOCKS = [r for r in all_rules() if r.family() == "locks"]
BEFORE = [
    migrations.CreateModel(
        "Category",
        [("id", models.BigAutoField(primary_key=True)), ("name", models.CharField(max_length=9))],
    ),
    migrations.CreateModel(
        "Product",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
            ("qty", models.IntegerField(null=True)),
            ("category", models.ForeignKey("Category", models.CASCADE, null=True)),
        ],
    ),
]
ADD = migrations.AddField("product", "note", models.TextField(null=True))
INDEX = migrations.AddIndex("product", models.Index(fields=["name"], name="p_name"))


def l308(operations: list[Any], **kw: Any) -> list[Finding]:
    return [f for f in judge(operations, BEFORE, rules=LOCKS, **kw) if f.rule == "L308"]


FIRES = {
    "cheap ALTER then index build": [ADD, INDEX],
    "varchar widening then index build": [
        migrations.AlterField("product", "name", models.CharField(max_length=200)),
        INDEX,
    ],
    "rename then check constraint": [
        migrations.RenameField("product", "qty", "quantity"),
        migrations.AddConstraint(
            "product", models.CheckConstraint(condition=models.Q(quantity__gte=0), name="q")
        ),
    ],
    "ALTER then type rewrite": [
        ADD,
        migrations.AlterField("product", "qty", models.BigIntegerField(null=True)),
    ],
    "two hot tables": [ADD, migrations.AddField("category", "note", models.TextField(null=True))],
    "FK made required: parent held through the scans": [
        migrations.AlterField("product", "category", models.ForeignKey("Category", models.CASCADE))
    ],
}


@pytest.mark.parametrize("label", sorted(FIRES))
def test_flags_lock_held_through_later_work(label: str, django_settings: None) -> None:
    found = l308(FIRES[label])
    assert [f.rule for f in found] == ["L308"]


def test_names_held_table_and_later_work(django_settings: None) -> None:
    (finding,) = l308([ADD, INDEX], rows={"shop_product": 4_000_000})
    assert "ACCESS EXCLUSIVE on `shop_product`" in finding.message
    assert "scans `shop_product`" in finding.message
    assert finding.severity is Severity.ERROR


SILENT = {
    "single cheap operation": [ADD],
    "single operation with its own index": [
        migrations.AddField(
            "product", "sku", models.CharField(max_length=9, null=True, unique=True)
        )
    ],
    "two cheap ALTERs on one table": [ADD, migrations.RenameField("product", "name", "title")],
    "index first, then cheap ALTER": [INDEX, ADD],
    "dropping an FK column": [migrations.RemoveField("product", "category")],
    "new tables only": [
        migrations.CreateModel(
            "Tag", [("id", models.BigAutoField(primary_key=True)), ("n", models.IntegerField())]
        ),
        migrations.AddIndex("tag", models.Index(fields=["n"], name="t_n")),
    ],
}


@pytest.mark.parametrize("label", sorted(SILENT))
def test_ignores_migrations_without_accumulation(label: str, django_settings: None) -> None:
    assert l308(SILENT[label]) == []


def test_ignores_non_atomic_migration(django_settings: None) -> None:
    assert l308([ADD, INDEX], atomic=False) == []


def test_leaves_data_passes_to_l305(django_settings: None) -> None:
    def touch(apps: Any, schema_editor: Any) -> None:
        Product = apps.get_model("shop", "Product")
        Product.objects.update(qty=0)

    found = judge([ADD, migrations.RunPython(touch)], BEFORE, rules=LOCKS)
    assert {f.rule for f in found} >= {"L305"} and "L308" not in {f.rule for f in found}


def test_names_the_lock_held_across_the_scan(django_settings: None) -> None:
    """Making a foreign key required drops the constraint (ACCESS EXCLUSIVE on the referenced
    table too) and then scans the referencing table: the message names the lock held across
    the scan, the referenced table's."""
    (finding,) = l308(
        [
            migrations.AlterField(
                "product", "category", models.ForeignKey("Category", models.CASCADE)
            )
        ]
    )
    assert finding.message.startswith(
        "`0002_change` takes ACCESS EXCLUSIVE on `shop_category` and holds it until COMMIT"
    )
    assert dict(finding.details)["held_table"] == "shop_category"
    # Every table the transaction holds while the later work runs: a deadlock on any of
    # them is this finding's to confirm.
    assert dict(finding.details)["tables"] == ("shop_category", "shop_product")
