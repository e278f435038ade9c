"""C108: a unique or check constraint that the old release's writes may violate."""

from __future__ import annotations

from typing import Any

import pytest
from _compat import COMPAT, FIELDS, deployed, fired
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


def unique(*fields: str, **kw: Any) -> migrations.AddConstraint:
    return migrations.AddConstraint(
        "product", models.UniqueConstraint(fields=list(fields), name="uniq", **kw)
    )


WRITTEN = sorted(k for k in FIELDS if k != "datetime")  # "datetime" is nullable, no default


def check(condition: models.Q) -> migrations.AddConstraint:
    return migrations.AddConstraint(
        "product", models.CheckConstraint(condition=condition, name="chk")
    )


def s0(*extra: tuple[str, models.Field[Any, Any]], **options: Any) -> list[Operation]:
    return [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("name", models.CharField(max_length=100)),
                ("price", models.IntegerField()),
                ("category", models.ForeignKey("shop.category", models.CASCADE)),
                *extra,
            ],
            options=options,
        ),
    ]


@pytest.mark.parametrize("kind", WRITTEN)
def test_flags_unique_constraint_on_column_in_s0(kind: str) -> None:
    findings = judge([unique("extra")], deployed(kind), rules=COMPAT)
    assert {f.rule for f in findings} == {"C108"}
    assert "duplicate key value violates unique constraint" in findings[0].message


@pytest.mark.parametrize("kind", WRITTEN)
def test_flags_alter_field_that_adds_unique(kind: str) -> None:
    field = FIELDS[kind]()
    field._unique = True
    assert fired([migrations.AlterField("product", "extra", field)], deployed(kind)) == {"C108"}


def test_flags_foreign_key_turned_into_one_to_one() -> None:
    op = migrations.AlterField(
        "product", "category", models.OneToOneField("shop.category", models.CASCADE)
    )
    assert "C108" in fired([op], s0())


@pytest.mark.parametrize("kind", WRITTEN)
def test_flags_unique_together_over_columns_in_s0(kind: str) -> None:
    op = migrations.AlterUniqueTogether("product", {("name", "extra")})
    before = s0(("extra", FIELDS[kind]()))
    assert fired([op], before) == {"C108"}


@pytest.mark.parametrize(
    "condition",
    [
        models.Q(price__gte=0),
        models.Q(price__gt=models.F("id")),
        models.Q(name__startswith="x") | models.Q(price=0),
        models.Q(category_id__gt=0),
        ~models.Q(name=""),
    ],
    ids=["lookup", "f-expression", "or", "attname", "negated"],
)
def test_flags_check_constraint_on_columns_in_s0(condition: models.Q) -> None:
    findings = judge([check(condition)], s0(), rules=COMPAT)
    assert {f.rule for f in findings} == {"C108"}
    assert "new row violates check constraint" in findings[0].message


@pytest.mark.parametrize("kind", ["char", "integer", "uuid", "datetime", "foreign_key"])
def test_ignores_unique_only_on_column_added_in_unit(kind: str) -> None:
    field = FIELDS[kind]()
    field.null = True
    unit_before = [[migrations.AddField("product", "fresh", field)]]
    assert fired([unique("fresh")], s0(), unit_before=unit_before) == set()


@pytest.mark.parametrize("default", [0, "", models.Value(7)], ids=["zero", "empty", "value"])
def test_flags_unique_on_new_column_with_constant_db_default(default: Any) -> None:
    unit_before = [
        [migrations.AddField("product", "code", models.IntegerField(db_default=default))]
    ]
    assert fired([unique("code")], s0(), unit_before=unit_before) == {"C108"}


def test_ignores_unique_on_new_column_with_per_row_db_default() -> None:
    field = models.DateTimeField(db_default=models.functions.Now())
    unit_before = [[migrations.AddField("product", "stamp", field)]]
    assert fired([unique("stamp")], s0(), unit_before=unit_before) == set()


@pytest.mark.parametrize("default", [None, models.Value(None)], ids=["none", "value_none"])
def test_ignores_unique_on_new_nullable_column_with_a_null_db_default(default: Any) -> None:
    # DEFAULT NULL: the old release's rows all get NULL, and NULLs never collide.
    field = models.IntegerField(null=True, db_default=default)
    unit_before = [[migrations.AddField("product", "code", field)]]
    assert fired([unique("code")], s0(), unit_before=unit_before) == set()


def test_ignores_check_only_on_column_added_in_unit() -> None:
    unit_before = [[migrations.AddField("product", "weight", models.IntegerField(null=True))]]
    assert fired([check(models.Q(weight__gte=0))], s0(), unit_before=unit_before) == set()


def test_ignores_unique_constraint_replacing_unique_together() -> None:
    before = s0(unique_together={("name", "category")})
    ops = [
        migrations.AlterUniqueTogether("product", set()),
        unique("name", "category"),
    ]
    assert fired(ops, before) == set()


def test_ignores_unique_implied_by_a_unique_column_in_s0() -> None:
    before = s0(("sku", models.CharField(max_length=20, unique=True)))
    assert fired([unique("sku", "name")], before) == set()


def test_ignores_check_constraint_already_in_s0_under_another_name() -> None:
    before = [
        *s0(),
        migrations.AddConstraint(
            "product", models.CheckConstraint(condition=models.Q(price__gte=0), name="old")
        ),
    ]
    ops = [migrations.RemoveConstraint("product", "old"), check(models.Q(price__gte=0))]
    assert fired(ops, before) == set()


def test_ignores_table_created_in_same_unit() -> None:
    before = s0()
    ops = [unique("name"), check(models.Q(price__gte=0))]
    assert fired(ops, before[:1], unit_before=[before[1:]]) == set()


def test_ignores_state_only_constraint() -> None:
    op = migrations.SeparateDatabaseAndState(state_operations=[unique("name")])
    assert fired([op], s0()) == set()


def test_ignores_alter_field_that_keeps_unique() -> None:
    before = s0(("sku", models.CharField(max_length=20, unique=True)))
    op = migrations.AlterField("product", "sku", models.CharField(max_length=40, unique=True))
    assert fired([op], before) == set()


def test_ignores_unique_together_sets_already_deployed() -> None:
    before = s0(unique_together={("name", "category")})
    op = migrations.AlterUniqueTogether("product", {("name", "category")})
    assert fired([op], before) == set()


def test_follows_a_rename_earlier_in_the_unit() -> None:
    unit_before = [[migrations.RenameField("product", "name", "title")]]
    assert fired([unique("title")], s0(), unit_before=unit_before) == {"C108"}


def test_flags_expression_unique_constraint() -> None:
    op = migrations.AddConstraint(
        "product",
        models.UniqueConstraint(models.functions.Lower("name"), name="uniq_lower_name"),
    )
    assert fired([op], s0()) == {"C108"}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ALTER TABLE shop_product ADD CONSTRAINT u UNIQUE (name)", {"C108"}),
        ("CREATE UNIQUE INDEX CONCURRENTLY u ON shop_product (name)", {"C108"}),
        ("CREATE UNIQUE INDEX u ON shop_product (lower(name))", {"C108"}),
        ("ALTER TABLE shop_product ADD CONSTRAINT c CHECK (price >= 0) NOT VALID", {"C108"}),
        ("ALTER TABLE shop_product ADD CONSTRAINT c CHECK (price >= 0)", {"C108"}),
        ("CREATE INDEX i ON shop_product (name)", set()),
        ("ALTER TABLE shop_product ADD CONSTRAINT u UNIQUE (ghost)", set()),
        ("ALTER TABLE shop_product ADD CONSTRAINT c CHECK (ghost > 0)", set()),
        ("ALTER TABLE shop_product ADD CONSTRAINT c CHECK (name IS NOT NULL)", set()),
        ("ALTER TABLE elsewhere ADD CONSTRAINT u UNIQUE (name)", set()),
        ("ALTER TABLE shop_product ADD CONSTRAINT u UNIQUE USING INDEX idx", set()),
    ],
)
def test_run_sql_constraints(sql: str, expected: set[str]) -> None:
    assert fired([migrations.RunSQL(sql)], s0()) == expected


def test_flags_expression_unique_even_if_the_plain_column_was_unique() -> None:
    before = s0(("sku", models.CharField(max_length=20, unique=True)))
    op = migrations.AddConstraint(
        "product", models.UniqueConstraint(models.functions.Lower("sku"), name="uniq_lower_sku")
    )
    assert fired([op], before) == {"C108"}


@pytest.mark.parametrize(
    "field",
    [
        models.CharField(max_length=12, null=True, blank=True),
        models.DateTimeField(null=True),
        models.ForeignKey("shop.category", models.SET_NULL, null=True, related_name="+"),
        models.CharField(max_length=12, null=True, default=None),
        models.CharField(max_length=12, null=True, db_default=None),
    ],
    ids=["char", "datetime", "foreign_key", "default-none", "db-default-none"],
)
def test_ignores_unique_over_column_the_old_model_leaves_null(field: Any) -> None:
    # The three-step recipe: added nullable, backfilled, then made unique.
    before = s0(("code", field))
    ops = [unique("code"), unique("code", "name")]
    assert fired(ops, before) == set()
    assert fired([migrations.AlterUniqueTogether("product", {("code", "price")})], before) == set()


@pytest.mark.parametrize(
    "field",
    [
        models.CharField(max_length=12, null=True, default="none"),
        models.CharField(max_length=12, null=True, db_default="none"),
        models.CharField(max_length=12, blank=True),
    ],
    ids=["python-default", "db-default", "not-null"],
)
def test_flags_unique_over_column_the_old_model_fills(field: Any) -> None:
    assert fired([unique("code")], s0(("code", field))) == {"C108"}


def test_flags_unique_with_nulls_not_distinct_even_over_null_columns() -> None:
    before = s0(("code", models.CharField(max_length=12, null=True)))
    assert fired([unique("code", nulls_distinct=False)], before) == {"C108"}


def test_ignores_unique_over_s0_column_and_new_nullable_column() -> None:
    unit_before = [[migrations.AddField("product", "fresh", models.IntegerField(null=True))]]
    assert fired([unique("name", "fresh")], s0(), unit_before=unit_before) == set()


def test_ignores_the_three_step_recipe_run_in_sql() -> None:
    before = s0(("code", models.CharField(max_length=12, null=True)))
    op = migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                [
                    'CREATE UNIQUE INDEX CONCURRENTLY "uniq" ON "shop_product" ("code")',
                    'ALTER TABLE "shop_product" ADD CONSTRAINT "uniq" UNIQUE USING INDEX "uniq"',
                ]
            )
        ],
        state_operations=[unique("code")],
    )
    assert fired([op], before, atomic=False) == set()
