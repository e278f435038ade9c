"""D204: a check constraint validated over rows that may violate it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.models import F, Q

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]


def deployed() -> list[Operation]:
    return [
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("price", models.DecimalField(max_digits=10, decimal_places=2)),
                ("stock", models.IntegerField()),
                ("rating", models.SmallIntegerField(null=True)),
                ("kind", models.CharField(max_length=10, choices=[("a", "A"), ("b", "B")])),
                ("sold_at", models.DateTimeField(null=True)),
            ],
        )
    ]


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    rows: Mapping[str, int] | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
) -> list[Finding]:
    return judge(operations, before, rows=rows, unit_before=unit_before, rules=DATA)


def check(condition: Any, name: str = "product_check") -> Operation:
    return migrations.AddConstraint(
        "product", models.CheckConstraint(condition=condition, name=name)
    )


CONDITIONS: dict[str, Any] = {
    "decimal_gte": Q(price__gte=0),
    "integer_range": Q(stock__range=(0, 1000)),
    "nullable_in": Q(rating__in=[1, 2, 3, 4, 5]),
    "choices_in": Q(kind__in=["a", "b"]),
    "column_comparison": Q(stock__lte=F("rating")),
    "or_isnull": Q(sold_at__isnull=True) | Q(stock=0),
}


@pytest.mark.parametrize("condition", CONDITIONS.values(), ids=CONDITIONS.keys())
def test_flags_check_constraint_over_columns_of_s0(condition: Any) -> None:
    [finding] = findings([check(condition)], deployed())
    assert (finding.rule, finding.severity) == ("D204", Severity.WARNING)
    assert "`shop_product`" in finding.message


def test_renders_the_condition_in_the_message_and_recipe() -> None:
    [finding] = findings([check(Q(price__gte=0), "price_non_negative")], deployed())
    assert "CHECK (price >= 0)" in finding.message
    assert any("price_non_negative" in step and "NOT VALID" in step for step in finding.recipe)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (models.IntegerField(), models.PositiveIntegerField()),
        (models.IntegerField(), models.PositiveSmallIntegerField()),
        (models.BigIntegerField(), models.PositiveBigIntegerField()),
    ],
    ids=["positive_integer", "positive_small", "positive_big"],
)
def test_flags_alter_field_that_brings_a_column_check(
    old: models.Field[Any, Any], new: models.Field[Any, Any]
) -> None:
    before = [
        migrations.CreateModel(
            "Product", [("id", models.BigAutoField(primary_key=True)), ("stock", old)]
        )
    ]
    found = findings([migrations.AlterField("product", "stock", new)], before)
    assert "D204" in {f.rule for f in found}
    [finding] = [f for f in found if f.rule == "D204"]
    assert '"stock" >= 0' in finding.message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (models.PositiveIntegerField(), models.PositiveBigIntegerField()),
        (models.IntegerField(), models.IntegerField(choices=[(1, "one")])),
        (models.IntegerField(), models.BigIntegerField()),
        (models.PositiveIntegerField(), models.IntegerField()),
        (models.CharField(max_length=5), models.CharField(max_length=9, choices=[("a", "A")])),
        (models.BooleanField(), models.BooleanField(default=True)),
        (models.JSONField(null=True), models.JSONField(default=dict)),
        (models.PositiveIntegerField(), models.PositiveIntegerField(db_column="qty")),
    ],
    ids=[
        "same_check",
        "choices",
        "widen",
        "drop_check",
        "char_choices",
        "boolean",
        "json",
        "same_check_other_column_name",
    ],
)
def test_ignores_alter_field_without_a_new_check(
    old: models.Field[Any, Any], new: models.Field[Any, Any]
) -> None:
    before = [
        migrations.CreateModel(
            "Product", [("id", models.BigAutoField(primary_key=True)), ("stock", old)]
        )
    ]
    found = findings([migrations.AlterField("product", "stock", new)], before)
    assert "D204" not in {f.rule for f in found}


def test_ignores_check_on_table_created_in_the_unit() -> None:
    assert findings([check(Q(price__gte=0))], unit_before=[deployed()]) == []


def test_ignores_state_only_check_with_not_valid_sql() -> None:
    op = migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                "ALTER TABLE shop_product ADD CONSTRAINT p CHECK (price >= 0) NOT VALID"
            )
        ],
        state_operations=[check(Q(price__gte=0), "p")],
    )
    assert findings([op], deployed()) == []


def test_follows_a_rename_earlier_in_the_unit() -> None:
    unit_before = [[migrations.RenameField("product", "price", "amount")]]
    [finding] = findings([check(Q(amount__gte=0))], deployed(), unit_before=unit_before)
    assert finding.rule == "D204"


def test_downgrades_to_info_on_an_empty_table() -> None:
    found = findings([check(Q(price__gte=0))], deployed(), rows={"shop_product": 0})
    assert [(f.rule, f.severity) for f in found] == [("D204", Severity.INFO)]


# -- checks over columns added in the unit ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "condition"),
    [
        (models.IntegerField(default=0), Q(discount__gte=0)),
        (models.IntegerField(db_default=5), Q(discount__range=(0, 100))),
        (models.IntegerField(null=True), Q(discount__gte=0)),
        (models.IntegerField(null=True), Q(discount__isnull=True) | Q(discount__gte=0)),
        (models.CharField(max_length=5, default="a"), Q(discount__in=["a", "b"])),
    ],
    ids=["default_passes", "db_default_passes", "null_passes", "or_isnull", "char_in"],
)
def test_ignores_check_that_the_added_value_satisfies(
    field: models.Field[Any, Any], condition: Any
) -> None:
    ops = [migrations.AddField("product", "discount", field), check(condition)]
    assert "D204" not in {f.rule for f in findings(ops, deployed())}


@pytest.mark.parametrize(
    ("field", "condition"),
    [
        (models.IntegerField(default=-1), Q(discount__gte=0)),
        (models.IntegerField(null=True), Q(discount__isnull=False)),
        (models.IntegerField(default=0), Q(discount__gte=F("stock"))),
        (models.IntegerField(default=0), Q(discount__gte=0, stock__gte=0)),
    ],
    ids=["default_fails", "null_fails_isnull", "expression", "mixes_an_s0_column"],
)
def test_flags_check_the_added_value_fails_or_that_cannot_be_evaluated(
    field: models.Field[Any, Any], condition: Any
) -> None:
    ops = [migrations.AddField("product", "discount", field), check(condition)]
    assert [f.rule for f in findings(ops, deployed())] == ["D204"]


def test_judges_a_column_added_in_an_earlier_migration_by_its_definition() -> None:
    unit_before = [[migrations.AddField("product", "discount", models.IntegerField(default=0))]]
    assert findings([check(Q(discount__gte=0))], deployed(), unit_before=unit_before) == []


# -- RunSQL ------------------------------------------------------------------------------


def test_flags_runsql_check_without_not_valid() -> None:
    op = migrations.RunSQL("ALTER TABLE shop_product ADD CONSTRAINT p CHECK (price >= 0)")
    [finding] = findings([op], deployed())
    assert (finding.rule, finding.severity) == ("D204", Severity.WARNING)
    assert "price >= 0" in finding.message


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE shop_product ADD CONSTRAINT p CHECK (price >= 0) NOT VALID",
        "ALTER TABLE shop_product VALIDATE CONSTRAINT p",
        "ALTER TABLE other_table ADD CONSTRAINT p CHECK (price >= 0)",
        "ALTER TABLE shop_product ADD COLUMN discount integer CHECK (discount >= 0)",
    ],
    ids=["not_valid", "validate", "unknown_table", "inline_on_new_column"],
)
def test_ignores_runsql_that_validates_no_existing_row(sql: str) -> None:
    assert findings([migrations.RunSQL(sql)], deployed()) == []


# -- values an earlier data step wrote -------------------------------------------------------


def clamp_prices(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.filter(price__lt=0).update(price=0)


def restock(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.update(stock=0)


def price_check() -> Operation:
    return migrations.AddConstraint(
        "product", models.CheckConstraint(condition=Q(price__gte=0), name="price_non_negative")
    )


@pytest.mark.parametrize(
    "step",
    [
        migrations.RunPython(clamp_prices, migrations.RunPython.noop),
        migrations.RunSQL("UPDATE shop_product SET price = 0 WHERE price < 0"),
    ],
    ids=["runpython", "runsql"],
)
def test_informs_when_an_earlier_data_migration_wrote_the_checked_column(step: Operation) -> None:
    [finding] = findings([price_check()], [*deployed(), step])
    assert (finding.rule, finding.severity) == ("D204", Severity.INFO)
    assert "`price`" in finding.message and "earlier data step" in finding.message


def test_informs_when_the_same_migration_wrote_the_checked_column_first() -> None:
    ops = [migrations.RunPython(clamp_prices, migrations.RunPython.noop), price_check()]
    [finding] = findings(ops, deployed())
    assert (finding.rule, finding.severity) == ("D204", Severity.INFO)


def test_informs_on_a_field_check_over_a_column_an_earlier_migration_wrote() -> None:
    before = [*deployed(), migrations.RunPython(restock, migrations.RunPython.noop)]
    op = migrations.AlterField("product", "stock", models.PositiveIntegerField())
    [finding] = findings([op], before)
    assert (finding.rule, finding.severity) == ("D204", Severity.INFO)


def test_informs_on_sql_check_over_a_column_an_earlier_migration_wrote() -> None:
    before = [*deployed(), migrations.RunPython(clamp_prices, migrations.RunPython.noop)]
    op = migrations.RunSQL("ALTER TABLE shop_product ADD CONSTRAINT p CHECK (price >= 0)")
    [finding] = findings([op], before)
    assert (finding.rule, finding.severity) == ("D204", Severity.INFO)


@pytest.mark.parametrize(
    "step",
    [
        migrations.RunPython(restock, migrations.RunPython.noop),
        migrations.RunSQL("UPDATE shop_product SET stock = 0"),
    ],
    ids=["runpython_other_column", "runsql_other_column"],
)
def test_keeps_the_warning_when_the_earlier_data_step_wrote_another_column(
    step: Operation,
) -> None:
    [finding] = findings([price_check()], [*deployed(), step])
    assert (finding.rule, finding.severity) == ("D204", Severity.WARNING)
