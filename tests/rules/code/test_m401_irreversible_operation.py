from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models

from django_rollout.rules.code.m401_irreversible_operation import IrreversibleOperation
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

CODE_RULES = [r for r in all_rules() if r.family() == "code"]

BEFORE = [
    migrations.CreateModel(
        "Product",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ],
    )
]


def forwards(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.filter(name="").update(name="n/a")


def backwards(apps: Any, schema_editor: Any) -> None:
    pass


def code_ids(operations: list[Any], **kwargs: Any) -> set[str]:
    return {f.rule for f in judge(operations, BEFORE, rules=CODE_RULES, **kwargs) if f.rule}


@pytest.mark.parametrize(
    "operation",
    [
        migrations.RunPython(forwards),
        migrations.RunPython(forwards, elidable=True),
        migrations.RunPython(forwards, atomic=False),
        migrations.RunSQL("UPDATE shop_product SET name = 'n/a' WHERE name = ''"),
        migrations.RunSQL(["UPDATE shop_product SET name = 'x'"], elidable=True),
    ],
    ids=["runpython", "runpython-elidable", "runpython-non-atomic", "runsql", "runsql-list"],
)
def test_flags_operation_without_reverse(operation: Any) -> None:
    findings = judge([operation], BEFORE, rules=[IrreversibleOperation])
    assert [f.rule for f in findings] == ["M401"]
    assert findings[0].operation_index == 0
    assert "IrreversibleError" in findings[0].message
    assert code_ids([operation]) == {"M401"}


def test_flags_runpython_inside_separate_database_and_state_database_operations() -> None:
    op = migrations.SeparateDatabaseAndState(database_operations=[migrations.RunPython(forwards)])
    findings = judge([op], BEFORE, rules=[IrreversibleOperation])
    assert [f.rule for f in findings] == ["M401"]
    assert findings[0].operation == "RunPython"


def test_flags_custom_operation_declared_irreversible() -> None:
    class Custom(migrations.AddField):
        reversible = False

    op = Custom("product", "sku", models.CharField(max_length=10, null=True))
    findings = judge([op], BEFORE, rules=[IrreversibleOperation])
    assert [f.rule for f in findings] == ["M401"]
    assert "database_backwards" in findings[0].help


@pytest.mark.parametrize(
    "operation",
    [
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.RunPython(forwards, backwards),
        migrations.RunSQL("UPDATE shop_product SET name = 'x'", migrations.RunSQL.noop),
        migrations.RunSQL("CREATE INDEX i ON shop_product (name)", "DROP INDEX i"),
        migrations.AddField("product", "sku", models.CharField(max_length=10, null=True)),
        migrations.RemoveField("product", "name"),
        migrations.AlterField("product", "name", models.CharField(max_length=200)),
        migrations.DeleteModel("product"),
    ],
    ids=[
        "runpython-noop-reverse",
        "runpython-reverse",
        "runsql-noop-reverse",
        "runsql-reverse",
        "addfield",
        "removefield",
        "alterfield",
        "deletemodel",
    ],
)
def test_ignores_reversible_operation(operation: Any) -> None:
    assert judge([operation], BEFORE, rules=[IrreversibleOperation]) == []


def test_ignores_state_only_runpython() -> None:
    # state_operations never run against the database, in either direction.
    op = migrations.SeparateDatabaseAndState(state_operations=[migrations.RunPython(forwards)])
    assert judge([op], BEFORE, rules=[IrreversibleOperation]) == []


def test_ignores_non_atomic_migration_flag_itself() -> None:
    op = migrations.RunPython(forwards, migrations.RunPython.noop)
    assert judge([op], BEFORE, atomic=False, rules=[IrreversibleOperation]) == []


def test_recipe_names_the_app_and_migration() -> None:
    [finding] = judge([migrations.RunSQL("SELECT 1")], BEFORE, rules=[IrreversibleOperation])
    assert "RunSQL.noop" in finding.help
    assert any("migrate shop" in step for step in finding.recipe)
    assert "0002_change" in finding.message
