"""C104: a table renamed while the old release still uses the old name."""

from __future__ import annotations

import pytest
from _compat import COMPAT, FIELDS, deployed, fired
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


def with_tags(kind: str) -> list[Operation]:
    return [
        *deployed(kind),
        migrations.AddField("product", "tags", models.ManyToManyField("shop.category")),
    ]


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_rename_model_without_db_table(kind: str) -> None:
    findings = judge([migrations.RenameModel("Product", "Item")], deployed(kind), rules=COMPAT)
    assert {f.rule for f in findings} == {"C104"}
    assert "`shop_product` is renamed to `shop_item`" in findings[0].message


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_rename_model_with_pinned_db_table(kind: str) -> None:
    ops = [
        migrations.AlterModelTable("product", "shop_product"),
        migrations.RenameModel("Product", "Item"),
    ]
    assert fired(ops, deployed(kind)) == set()


def test_ignores_rename_model_whose_db_table_was_set_in_s0() -> None:
    before = [
        migrations.CreateModel(
            "Product",
            [("id", models.BigAutoField(primary_key=True))],
            options={"db_table": "products"},
        )
    ]
    assert fired([migrations.RenameModel("Product", "Item")], before) == set()


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_alter_model_table_that_changes_the_name(kind: str) -> None:
    assert fired([migrations.AlterModelTable("product", "products")], deployed(kind)) == {"C104"}


def test_ignores_alter_model_table_to_the_same_name() -> None:
    assert fired([migrations.AlterModelTable("product", "shop_product")], deployed("char")) == set()


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_rename_of_model_created_in_same_unit(kind: str) -> None:
    before = deployed(kind)[:1]
    ops = [migrations.RenameModel("Product", "Item")]
    assert fired(ops, before, unit_before=[deployed(kind)[1:]]) == set()


def test_ignores_state_only_rename_model() -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RenameModel("Product", "Item")]
    )
    assert fired([op], deployed("char")) == set()


def test_ignores_proxy_and_unmanaged_models() -> None:
    before = [
        *deployed("char"),
        migrations.CreateModel("Cheap", [], options={"proxy": True}, bases=("shop.product",)),
        migrations.CreateModel(
            "Legacy", [("id", models.AutoField(primary_key=True))], options={"managed": False}
        ),
    ]
    ops = [migrations.RenameModel("Cheap", "Bargain"), migrations.RenameModel("Legacy", "Old")]
    assert fired(ops, before) == set()


def test_names_the_join_tables_renamed_with_the_model() -> None:
    (finding,) = judge([migrations.RenameModel("Product", "Item")], with_tags("char"), rules=COMPAT)
    assert finding.rule == "C104"
    assert "`shop_product_tags`" in finding.message
    assert dict(finding.details)["join_tables"] == [["shop_product_tags", "shop_item_tags"]]


def test_flags_many_to_many_rename_that_renames_its_join_table() -> None:
    findings = judge(
        [migrations.RenameField("product", "tags", "labels")], with_tags("char"), rules=COMPAT
    )
    assert {f.rule for f in findings} == {"C104"}
    assert "`shop_product_tags` is renamed to `shop_product_labels`" in findings[0].message


def test_ignores_many_to_many_rename_with_its_own_db_table() -> None:
    before = [
        *deployed("char"),
        migrations.AddField(
            "product", "tags", models.ManyToManyField("shop.category", db_table="product_tags")
        ),
    ]
    assert fired([migrations.RenameField("product", "tags", "labels")], before) == set()


def test_ignores_rename_of_many_to_many_added_in_same_unit() -> None:
    unit_before = [
        [migrations.AddField("product", "tags", models.ManyToManyField("shop.category"))]
    ]
    ops = [migrations.RenameField("product", "tags", "labels")]
    assert "C104" not in fired(ops, deployed("char"), unit_before=unit_before)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('ALTER TABLE "shop_product" RENAME TO "shop_item"', {"C104"}),
        ("ALTER TABLE IF EXISTS shop_product RENAME TO shop_item", {"C104"}),
        ("ALTER TABLE shop_elsewhere RENAME TO shop_item", set()),
        ("ALTER INDEX shop_product_pkey RENAME TO shop_item_pkey", set()),
    ],
)
def test_run_sql_rename_table(sql: str, expected: set[str]) -> None:
    assert fired([migrations.RunSQL(sql)], deployed("char")) == expected
