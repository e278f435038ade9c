"""C102: a column dropped while the old release still reads or writes it."""

from __future__ import annotations

import pytest
from _compat import COMPAT, FIELDS, deployed, fired
from django.db import migrations, models

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_remove_field_of_column_in_s0(kind: str) -> None:
    findings = judge([migrations.RemoveField("product", "extra")], deployed(kind), rules=COMPAT)
    assert {f.rule for f in findings} == {"C102"}
    column = "extra_id" if kind == "foreign_key" else "extra"
    assert f"`shop_product`.`{column}`" in findings[0].message


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_database_only_remove_field(kind: str) -> None:
    op = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.RemoveField("product", "extra")],
        state_operations=[migrations.RemoveField("product", "extra")],
    )
    assert fired([op], deployed(kind)) == {"C102"}


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_state_only_remove_field(kind: str) -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveField("product", "extra")]
    )
    assert fired([op], deployed(kind)) == set()


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_column_added_in_same_unit(kind: str) -> None:
    before = deployed("char")
    unit_before = [[migrations.AddField("product", "fresh", FIELDS[kind]())]]
    ops = [migrations.RemoveField("product", "fresh")]
    assert "C102" not in fired(ops, before, unit_before=unit_before)


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_table_created_in_same_unit(kind: str) -> None:
    before = deployed("char")[:1]
    unit_before = [deployed(kind)[1:]]
    assert fired([migrations.RemoveField("product", "extra")], before, unit_before=unit_before) == (
        set()
    )


def test_flags_remove_after_state_only_removal_in_same_unit() -> None:
    # Both releases of the two-release pattern in one deploy: the old release still uses it.
    state_only = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveField("product", "extra")]
    )
    drop = migrations.RunSQL('ALTER TABLE "shop_product" DROP COLUMN "extra"')
    assert fired([drop], deployed("char"), unit_before=[[state_only]]) == {"C102"}


def test_ignores_second_release_drop_of_column_removed_from_s0_state() -> None:
    before = [
        *deployed("char"),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField("product", "extra")]
        ),
    ]
    drop = migrations.RunSQL(
        'ALTER TABLE "shop_product" DROP COLUMN "extra"', migrations.RunSQL.noop
    )
    assert fired([drop], before) == set()


@pytest.mark.parametrize(
    "sql",
    [
        'ALTER TABLE "shop_product" DROP COLUMN "extra"',
        "ALTER TABLE shop_product DROP COLUMN IF EXISTS extra",
        "alter table SHOP_PRODUCT add column x int, drop column extra",
    ],
)
def test_flags_run_sql_drop_column_in_s0(sql: str) -> None:
    assert fired([migrations.RunSQL(sql)], deployed("char")) == {"C102"}


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE shop_product DROP COLUMN not_a_field",
        "ALTER TABLE other_table DROP COLUMN extra",
        "SELECT 1",
        "this is not sql",
    ],
)
def test_ignores_run_sql_that_drops_nothing_the_old_release_uses(sql: str) -> None:
    assert fired([migrations.RunSQL(sql)], deployed("char")) == set()


def test_ignores_run_sql_drop_column_in_state_only_position() -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RunSQL("ALTER TABLE shop_product DROP COLUMN extra")]
    )
    assert fired([op], deployed("char")) == set()


def test_ignores_many_to_many_field_removal() -> None:
    before = [
        *deployed("char"),
        migrations.AddField("product", "tags", models.ManyToManyField("shop.category")),
    ]
    assert "C102" not in fired([migrations.RemoveField("product", "tags")], before)


def test_flags_remove_of_renamed_column_with_old_column_kept() -> None:
    # Renamed in code only (db_column keeps "extra"): the column dropped is the S0 one.
    before = deployed("char")
    unit_before = [
        [
            migrations.AlterField(
                "product", "extra", models.CharField(max_length=100, db_column="extra")
            ),
            migrations.RenameField("product", "extra", "label"),
        ]
    ]
    assert fired([migrations.RemoveField("product", "label")], before, unit_before=unit_before) == {
        "C102"
    }


def test_message_names_field_and_recipe_uses_state_only_removal() -> None:
    (finding,) = judge([migrations.RemoveField("product", "extra")], deployed("char"), rules=COMPAT)
    assert "`extra`" in finding.message
    assert any("SeparateDatabaseAndState" in step for step in finding.recipe)
    assert any('DROP COLUMN "extra"' in step for step in finding.recipe)
