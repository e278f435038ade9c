"""C105: a table dropped while the old release still uses it."""

from __future__ import annotations

import pytest
from _compat import COMPAT, FIELDS, deployed, fired
from django.db import migrations, models

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_delete_model_of_table_in_s0(kind: str) -> None:
    findings = judge([migrations.DeleteModel("Product")], deployed(kind), rules=COMPAT)
    assert {f.rule for f in findings} == {"C105"}
    assert findings[0].message.startswith("`shop_product` is dropped")


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_state_only_delete_model(kind: str) -> None:
    op = migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel("Product")])
    assert fired([op], deployed(kind)) == set()


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_database_only_delete_model(kind: str) -> None:
    op = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.DeleteModel("Product")],
        state_operations=[migrations.DeleteModel("Product")],
    )
    assert fired([op], deployed(kind)) == {"C105"}


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_model_created_in_same_unit(kind: str) -> None:
    before = deployed(kind)[:1]
    assert fired([migrations.DeleteModel("Product")], before, unit_before=[deployed(kind)[1:]]) == (
        set()
    )


def test_flags_delete_of_model_renamed_earlier_in_unit() -> None:
    unit_before = [[migrations.RenameModel("Product", "Item")]]
    assert fired([migrations.DeleteModel("Item")], deployed("char"), unit_before=unit_before) == {
        "C105"
    }


def test_ignores_proxy_and_unmanaged_models() -> None:
    before = [
        *deployed("char"),
        migrations.CreateModel("Cheap", [], options={"proxy": True}, bases=("shop.product",)),
        migrations.CreateModel(
            "Legacy", [("id", models.AutoField(primary_key=True))], options={"managed": False}
        ),
    ]
    ops = [migrations.DeleteModel("Cheap"), migrations.DeleteModel("Legacy")]
    assert fired(ops, before) == set()


def test_names_join_tables_dropped_with_the_model() -> None:
    before = [
        *deployed("char"),
        migrations.AddField("product", "tags", models.ManyToManyField("shop.category")),
    ]
    (finding,) = judge([migrations.DeleteModel("Product")], before, rules=COMPAT)
    assert "`shop_product_tags`" in finding.message


def test_flags_removal_of_many_to_many_join_table() -> None:
    before = [
        *deployed("char"),
        migrations.AddField("product", "tags", models.ManyToManyField("shop.category")),
    ]
    findings = judge([migrations.RemoveField("product", "tags")], before, rules=COMPAT)
    assert {f.rule for f in findings} == {"C105"}
    assert "`shop_product_tags`" in findings[0].message


def test_ignores_removal_of_many_to_many_with_explicit_through() -> None:
    before = [
        *deployed("char"),
        migrations.CreateModel(
            "Tagging",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("product", models.ForeignKey("shop.product", models.CASCADE)),
                ("category", models.ForeignKey("shop.category", models.CASCADE)),
            ],
        ),
        migrations.AddField(
            "product",
            "tags",
            models.ManyToManyField("shop.category", through="shop.Tagging", related_name="+"),
        ),
    ]
    assert fired([migrations.RemoveField("product", "tags")], before) == set()


def test_ignores_many_to_many_added_in_same_unit() -> None:
    unit_before = [
        [migrations.AddField("product", "tags", models.ManyToManyField("shop.category"))]
    ]
    ops = [migrations.RemoveField("product", "tags")]
    assert fired(ops, deployed("char"), unit_before=unit_before) == set()


def test_ignores_state_only_many_to_many_removal() -> None:
    before = [
        *deployed("char"),
        migrations.AddField("product", "tags", models.ManyToManyField("shop.category")),
    ]
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveField("product", "tags")]
    )
    assert fired([op], before) == set()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('DROP TABLE "shop_product"', {"C105"}),
        ("DROP TABLE IF EXISTS shop_product CASCADE", {"C105"}),
        ("DROP TABLE unrelated", set()),
        ("DROP INDEX shop_product_pkey", set()),
    ],
)
def test_run_sql_drop_table(sql: str, expected: set[str]) -> None:
    assert fired([migrations.RunSQL(sql)], deployed("char")) == expected


def test_ignores_second_release_drop_of_table_removed_from_s0_state() -> None:
    before = [
        *deployed("char"),
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel("Product")]),
    ]
    op = migrations.RunSQL('DROP TABLE "shop_product"', migrations.RunSQL.noop)
    assert fired([op], before) == set()


def test_flags_both_releases_collapsed_into_one_unit() -> None:
    state_only = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.DeleteModel("Product")]
    )
    op = migrations.RunSQL('DROP TABLE "shop_product"')
    assert fired([op], deployed("char"), unit_before=[[state_only]]) == {"C105"}
