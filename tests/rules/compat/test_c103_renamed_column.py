"""C103: a column renamed in the database while the old release uses the old name."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from _compat import COMPAT, FIELDS, deployed, fired
from django.db import migrations, models

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_rename_field_of_column_in_s0(kind: str) -> None:
    findings = judge(
        [migrations.RenameField("product", "extra", "label")], deployed(kind), rules=COMPAT
    )
    assert {f.rule for f in findings} == {"C103"}
    old, new = ("extra_id", "label_id") if kind == "foreign_key" else ("extra", "label")
    assert f"`shop_product`.`{old}` is renamed to `{new}`" in findings[0].message


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_rename_field_that_keeps_the_column_with_db_column(kind: str) -> None:
    field = FIELDS[kind]()
    field.db_column = "extra_id" if kind == "foreign_key" else "extra"
    ops = [
        migrations.AlterField("product", "extra", field),
        migrations.RenameField("product", "extra", "label"),
    ]
    assert fired(ops, deployed(kind)) == set()


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_flags_alter_field_that_changes_db_column(kind: str) -> None:
    field = FIELDS[kind]()
    field.db_column = "renamed"
    assert fired([migrations.AlterField("product", "extra", field)], deployed(kind)) == {"C103"}


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_rename_of_column_added_in_same_unit(kind: str) -> None:
    unit_before = [[migrations.AddField("product", "fresh", FIELDS[kind]())]]
    ops = [migrations.RenameField("product", "fresh", "label")]
    assert "C103" not in fired(ops, deployed("char"), unit_before=unit_before)


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_ignores_rename_on_table_created_in_same_unit(kind: str) -> None:
    before = deployed(kind)[:1]
    ops = [migrations.RenameField("product", "extra", "label")]
    assert fired(ops, before, unit_before=[deployed(kind)[1:]]) == set()


def test_ignores_state_only_rename() -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RenameField("product", "extra", "label")]
    )
    assert fired([op], deployed("char")) == set()


def test_flags_plain_column_turned_into_foreign_key() -> None:
    # `category` (integer) becomes a ForeignKey: Django renames the column to category_id.
    before = [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [("id", models.BigAutoField(primary_key=True)), ("category", models.BigIntegerField())],
        ),
    ]
    op = migrations.AlterField(
        "product", "category", models.ForeignKey("shop.category", models.CASCADE)
    )
    assert "C103" in fired([op], before)


def test_flags_only_the_first_of_two_renames_in_the_unit() -> None:
    unit_before = [[migrations.RenameField("product", "extra", "label")]]
    ops = [migrations.RenameField("product", "label", "title")]
    assert "C103" not in fired(ops, deployed("char"), unit_before=unit_before)
    assert fired([migrations.RenameField("product", "extra", "label")], deployed("char")) == {
        "C103"
    }


def test_ignores_alter_field_that_keeps_the_column() -> None:
    op = migrations.AlterField("product", "extra", models.CharField(max_length=100, blank=True))
    assert fired([op], deployed("char")) == set()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('ALTER TABLE "shop_product" RENAME COLUMN "extra" TO "label"', {"C103"}),
        ("ALTER TABLE shop_product RENAME extra TO label", {"C103"}),
        ("ALTER TABLE shop_product RENAME COLUMN ghost TO label", set()),
        ("ALTER TABLE elsewhere RENAME COLUMN extra TO label", set()),
    ],
)
def test_run_sql_rename_column(sql: str, expected: set[str]) -> None:
    assert fired([migrations.RunSQL(sql)], deployed("char")) == expected


def test_ignores_many_to_many_rename_here() -> None:
    before = [
        *deployed("char"),
        migrations.AddField("product", "tags", models.ManyToManyField("shop.category")),
    ]
    assert "C103" not in fired([migrations.RenameField("product", "tags", "labels")], before)


# The old release inserts a product the way its model does: ``extra`` only.
OLD_INSERT = "INSERT INTO shop_product (extra) VALUES (%s)"
READD = migrations.AddField(
    "product", "extra", models.CharField(max_length=2, default="", blank=True)
)


@pytest.mark.parametrize(
    ("operations", "value", "readded"),
    [
        # Renamed away only: the old name is gone.
        ([migrations.RenameField("product", "extra", "extra_old")], "DE", False),
        # Renamed away and added anew under the old name (pretix's 0070): the old name
        # reaches the new column, refusing a value too long for it ...
        ([migrations.RenameField("product", "extra", "extra_old"), READD], "Germany", True),
        # ... and, where it fits, the renamed column the old release no longer fills.
        ([migrations.RenameField("product", "extra", "extra_old"), READD], "DE", True),
        # The same, through a SeparateDatabaseAndState's database operations.
        (
            [
                migrations.RenameField("product", "extra", "extra_old"),
                migrations.SeparateDatabaseAndState(database_operations=[READD]),
            ],
            "Germany",
            True,
        ),
    ],
)
def test_the_error_production_sees_confirms_the_finding(
    operations: list[Any], value: str, readded: bool
) -> None:
    from _sql import django_sql, pg_schema
    from django.db.migrations.state import ProjectState

    from django_rollout.rules.compat.c103_column_renamed_while_in_use import (
        ColumnRenamedWhileInUse,
    )

    (finding,) = [f for f in judge(operations, deployed("char"), rules=COMPAT) if f.rule == "C103"]
    assert ("a new `extra` column takes its name" in finding.message) is readded
    assert ('fail with `column "extra" does not exist`' in finding.message) is not readded
    state = ProjectState()
    with pg_schema() as conn:
        for statement in django_sql(deployed("char"), state):
            conn.execute(statement)
        for statement in django_sql(operations, state):
            conn.execute(statement)
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(OLD_INSERT, [value])
    sqlstate = raised.value.sqlstate or ""
    assert sqlstate.startswith(ColumnRenamedWhileInUse.observed_as(finding))


def test_a_column_of_the_old_name_added_to_another_table_changes_nothing() -> None:
    operations = [
        migrations.RenameField("product", "extra", "extra_old"),
        migrations.AddField("category", "extra", models.CharField(max_length=2, default="")),
    ]
    (finding,) = [f for f in judge(operations, deployed("char"), rules=COMPAT) if f.rule == "C103"]
    assert 'fail with `column "extra" does not exist`' in finding.message
    assert dict(finding.details) == {}
