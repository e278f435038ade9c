"""C106: a column type changed in a way the old release may not read or write."""

from __future__ import annotations

from typing import Any

import pytest
from _compat import COMPAT, fired
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


def product(field: models.Field[Any, Any]) -> list[Operation]:
    return [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product", [("id", models.BigAutoField(primary_key=True)), ("value", field)]
        ),
    ]


INCOMPATIBLE = [
    (models.CharField(max_length=100), models.CharField(max_length=50)),
    (models.TextField(), models.CharField(max_length=200)),
    (models.CharField(max_length=5), models.IntegerField(default=0)),
    (models.TextField(), models.IntegerField()),
    (models.BigIntegerField(), models.IntegerField()),
    (models.IntegerField(), models.SmallIntegerField()),
    (models.DateTimeField(), models.DateField()),
    (models.DateField(), models.DateTimeField()),
    (models.UUIDField(), models.CharField(max_length=36)),
    (models.DecimalField(max_digits=10, decimal_places=2), models.IntegerField()),
    (
        models.DecimalField(max_digits=10, decimal_places=4),
        models.DecimalField(max_digits=10, decimal_places=2),
    ),
    (
        models.DecimalField(max_digits=10, decimal_places=2),
        models.DecimalField(max_digits=8, decimal_places=2),
    ),
    (models.FloatField(), models.IntegerField()),
    (models.BooleanField(), models.IntegerField()),
    (models.JSONField(), models.TextField()),
    (models.IntegerField(), models.BooleanField()),
]

COMPATIBLE = [
    (models.CharField(max_length=50), models.CharField(max_length=100)),
    (models.CharField(max_length=50), models.TextField()),
    (models.CharField(max_length=50), models.CharField(max_length=50, blank=True, help_text="x")),
    (models.CharField(max_length=5), models.CharField(max_length=5, choices=[("a", "A")])),
    (models.IntegerField(), models.BigIntegerField()),
    (models.SmallIntegerField(), models.IntegerField()),
    (models.IntegerField(), models.PositiveIntegerField()),
    (
        models.DecimalField(max_digits=8, decimal_places=2),
        models.DecimalField(max_digits=12, decimal_places=2),
    ),
    (models.DateTimeField(), models.DateTimeField(auto_now=True)),
    (models.IntegerField(), models.IntegerField(validators=[], verbose_name="v")),
    (models.JSONField(), models.JSONField(default=dict)),
    (models.UUIDField(), models.UUIDField(unique=True)),
    (models.BooleanField(), models.BooleanField(default=True)),
    (models.IntegerField(), models.IntegerField(null=True)),
]


def _id(pair: tuple[models.Field[Any, Any], models.Field[Any, Any]]) -> str:
    return f"{pair[0].__class__.__name__}->{pair[1].__class__.__name__}"


@pytest.mark.parametrize("pair", INCOMPATIBLE, ids=[_id(p) for p in INCOMPATIBLE])
def test_flags_narrowing_or_change_of_kind(pair: tuple[Any, Any]) -> None:
    old, new = pair
    findings = judge([migrations.AlterField("product", "value", new)], product(old), rules=COMPAT)
    assert "C106" in {f.rule for f in findings}
    assert {f.rule for f in findings} <= {"C106", "C107", "C108"}


@pytest.mark.parametrize("pair", COMPATIBLE, ids=[_id(p) for p in COMPATIBLE])
def test_ignores_widening_and_type_preserving_changes(pair: tuple[Any, Any]) -> None:
    old, new = pair
    ops = [migrations.AlterField("product", "value", new)]
    assert "C106" not in fired(ops, product(old))


@pytest.mark.parametrize("pair", INCOMPATIBLE, ids=[_id(p) for p in INCOMPATIBLE])
def test_ignores_table_created_in_same_unit(pair: tuple[Any, Any]) -> None:
    old, new = pair
    before = product(old)
    ops = [migrations.AlterField("product", "value", new)]
    assert fired(ops, before[:1], unit_before=[before[1:]]) == set()


@pytest.mark.parametrize("pair", INCOMPATIBLE, ids=[_id(p) for p in INCOMPATIBLE])
def test_ignores_column_added_in_same_unit(pair: tuple[Any, Any]) -> None:
    old, new = pair
    before = product(models.IntegerField())
    unit_before = [[migrations.AddField("product", "fresh", old)]]
    ops = [migrations.AlterField("product", "fresh", new)]
    assert "C106" not in fired(ops, before, unit_before=unit_before)


def test_judges_against_s0_type_not_the_intermediate_one() -> None:
    # 100 -> 30 -> 200 in the unit: the last step widens from S0's 100.
    before = product(models.CharField(max_length=100))
    unit_before = [[migrations.AlterField("product", "value", models.CharField(max_length=30))]]
    ops = [migrations.AlterField("product", "value", models.CharField(max_length=200))]
    assert "C106" not in fired(ops, before, unit_before=unit_before)
    ops = [migrations.AlterField("product", "value", models.CharField(max_length=60))]
    assert "C106" in fired(ops, before, unit_before=unit_before)


def test_follows_a_rename_earlier_in_the_unit() -> None:
    before = product(models.CharField(max_length=100))
    unit_before = [[migrations.RenameField("product", "value", "label")]]
    ops = [migrations.AlterField("product", "label", models.CharField(max_length=10))]
    assert "C106" in fired(ops, before, unit_before=unit_before)


def test_ignores_state_only_alter_field() -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField("product", "value", models.CharField(max_length=10))
        ]
    )
    assert fired([op], product(models.CharField(max_length=100))) == set()


def test_message_quotes_both_database_types() -> None:
    findings = judge(
        [migrations.AlterField("product", "value", models.CharField(max_length=50))],
        product(models.CharField(max_length=100)),
        rules=COMPAT,
    )
    (finding,) = [f for f in findings if f.rule == "C106"]
    assert "from `varchar(100)` to `varchar(50)`" in finding.message
    assert "may not fit" in finding.message


def test_ignores_foreign_key_whose_key_type_is_unchanged() -> None:
    before = product(models.ForeignKey("shop.category", models.CASCADE))
    new = models.ForeignKey("shop.category", models.CASCADE, null=True, related_name="+")
    assert "C106" not in fired([migrations.AlterField("product", "value", new)], before)


def test_ignores_integer_column_turned_into_foreign_key_to_bigint_key() -> None:
    # integer -> bigint widens; the column rename is C103's business.
    before = product(models.IntegerField())
    new = models.ForeignKey("shop.category", models.CASCADE, db_column="value")
    assert "C106" not in fired([migrations.AlterField("product", "value", new)], before)


def test_leaves_a_type_change_that_also_renames_the_column_to_c103() -> None:
    # ForeignKey ``value`` (column ``value_id``, integer) becomes CharField ``value`` (column
    # ``value``): the old release fails on the missing ``value_id`` first (C103); it never
    # binds an integer to the new column.
    before = [
        migrations.CreateModel("Category", [("id", models.AutoField(primary_key=True))]),
        *product(models.ForeignKey("shop.category", models.CASCADE)),
    ]
    to_char = migrations.AlterField("product", "value", models.CharField(max_length=255))
    found = fired([to_char], before)
    assert "C103" in found and "C106" not in found
    # The same type change keeping the column name is C106's.
    kept = models.CharField(max_length=255, db_column="value_id")
    assert "C106" in fired([migrations.AlterField("product", "value", kept)], before)


def test_flags_bigint_column_turned_into_foreign_key_to_integer_key() -> None:
    before = [
        migrations.CreateModel("Category", [("id", models.AutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [("id", models.BigAutoField(primary_key=True)), ("value", models.BigIntegerField())],
        ),
    ]
    new = models.ForeignKey("shop.category", models.CASCADE, db_column="value")
    assert "C106" in fired([migrations.AlterField("product", "value", new)], before)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ALTER TABLE shop_product ALTER COLUMN value TYPE varchar(20)", {"C106"}),
        ("ALTER TABLE shop_product ALTER COLUMN value TYPE integer USING value::integer", {"C106"}),
        ("ALTER TABLE shop_product ALTER COLUMN value TYPE varchar(500)", set()),
        ("ALTER TABLE shop_product ALTER COLUMN value TYPE text", set()),
        ("ALTER TABLE shop_product ALTER COLUMN ghost TYPE integer", set()),
        ("ALTER TABLE elsewhere ALTER COLUMN value TYPE integer", set()),
    ],
)
def test_run_sql_alter_column_type(sql: str, expected: set[str]) -> None:
    assert fired([migrations.RunSQL(sql)], product(models.CharField(max_length=100))) == expected
