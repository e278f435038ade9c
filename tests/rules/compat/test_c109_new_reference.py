"""C109: a new reference to a table in S0 that the old release's delete cascade does not know."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from _compat import COMPAT, deployed, fired
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.findings import Severity
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


RELATIONS: dict[str, Callable[..., models.Field[Any, Any]]] = {
    "foreign_key": lambda to="shop.product", **kw: models.ForeignKey(to, models.CASCADE, **kw),
    "set_null": lambda to="shop.product", **kw: models.ForeignKey(
        to, models.SET_NULL, null=True, **kw
    ),
    "protect": lambda to="shop.product", **kw: models.ForeignKey(to, models.PROTECT, **kw),
    "one_to_one": lambda to="shop.product", **kw: models.OneToOneField(to, models.CASCADE, **kw),
}
USER = {
    "auth": [
        migrations.CreateModel(
            "User",
            [
                ("id", models.AutoField(primary_key=True)),
                ("username", models.CharField(max_length=150)),
            ],
        )
    ]
}


def review(field: models.Field[Any, Any]) -> migrations.CreateModel:
    return migrations.CreateModel(
        "Review", [("id", models.BigAutoField(primary_key=True)), ("target", field)]
    )


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_flags_new_model_referencing_table_in_s0(kind: str) -> None:
    findings = judge([review(RELATIONS[kind]())], deployed("char"), rules=COMPAT)
    assert {f.rule for f in findings} == {"C109"}
    message = findings[0].message
    assert "`shop_review`.`target_id` references `shop_product`" in message
    assert "violates foreign key constraint" in message


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_flags_new_model_referencing_auth_user(kind: str) -> None:
    ops = [review(RELATIONS[kind]("auth.user"))]
    assert fired(ops, deployed("char"), other_apps=USER) == {"C109"}


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_flags_field_added_to_table_in_s0(kind: str) -> None:
    field = RELATIONS[kind]("shop.category")
    if not field.null:
        field.null = True  # keep C101 out of the way
    assert fired([migrations.AddField("product", "main", field)], deployed("char")) == {"C109"}


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_flags_field_added_to_table_created_in_unit(kind: str) -> None:
    unit_before = [[review(models.IntegerField())]]
    ops = [migrations.AddField("review", "product", RELATIONS[kind]())]
    assert fired(ops, deployed("char"), unit_before=unit_before) == {"C109"}


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_ignores_db_constraint_false(kind: str) -> None:
    ops = [review(RELATIONS[kind](db_constraint=False))]
    assert fired(ops, deployed("char")) == set()


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_ignores_target_created_in_same_unit(kind: str) -> None:
    before = deployed("char")
    unit_before = [before[1:]]
    assert fired([review(RELATIONS[kind]())], before[:1], unit_before=unit_before) == set()


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_ignores_state_only_reference(kind: str) -> None:
    op = migrations.SeparateDatabaseAndState(state_operations=[review(RELATIONS[kind]())])
    assert fired([op], deployed("char")) == set()


def test_ignores_self_reference_of_new_model() -> None:
    field = models.ForeignKey("self", models.CASCADE, null=True)
    assert fired([review(field)], deployed("char")) == set()


def test_flags_self_reference_added_to_table_in_s0() -> None:
    field = models.ForeignKey("self", models.CASCADE, null=True)
    assert fired([migrations.AddField("product", "parent", field)], deployed("char")) == {"C109"}


def test_flags_many_to_many_join_table_on_both_tables_in_s0() -> None:
    op = migrations.AddField("product", "tags", models.ManyToManyField("shop.category"))
    findings = judge([op], deployed("char"), rules=COMPAT)
    assert {f.rule for f in findings} == {"C109"}
    messages = sorted(f.message for f in findings)
    assert len(messages) == 2
    assert "`shop_product_tags`.`category_id` references `shop_category`" in messages[0]
    assert "`shop_product_tags`.`product_id` references `shop_product`" in messages[1]


def test_flags_many_to_many_of_new_model_only_towards_table_in_s0() -> None:
    op = migrations.CreateModel(
        "Bundle",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("products", models.ManyToManyField("shop.product")),
        ],
    )
    findings = judge([op], deployed("char"), rules=COMPAT)
    assert [f.rule for f in findings] == ["C109"]
    assert "`shop_bundle_products`.`product_id` references `shop_product`" in findings[0].message


def test_ignores_many_to_many_with_explicit_through() -> None:
    before = [
        *deployed("char"),
        migrations.CreateModel(
            "Tagging",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("product", models.ForeignKey("shop.product", models.CASCADE, db_constraint=False)),
                (
                    "category",
                    models.ForeignKey("shop.category", models.CASCADE, db_constraint=False),
                ),
            ],
        ),
    ]
    op = migrations.AddField(
        "product", "tags", models.ManyToManyField("shop.category", through="shop.Tagging")
    )
    assert fired([op], before) == set()


def test_flags_plain_column_turned_into_foreign_key() -> None:
    before = [
        *deployed("char"),
        migrations.AddField(
            "product", "main", models.BigIntegerField(null=True, db_column="main_id")
        ),
    ]
    field = models.ForeignKey("shop.category", models.SET_NULL, null=True)
    assert "C109" in fired([migrations.AlterField("product", "main", field)], before)


def test_ignores_db_constraint_turned_on_for_a_relation_the_old_release_has() -> None:
    # The old release's Collector already handles Review.target: only the constraint is new.
    before = [*deployed("char"), review(RELATIONS["protect"](db_constraint=False))]
    op = migrations.AlterField("review", "target", RELATIONS["protect"]())
    assert fired([op], before) == set()


def test_flags_db_constraint_turned_on_for_a_relation_new_in_the_unit() -> None:
    unit_before = [[review(RELATIONS["foreign_key"](db_constraint=False))]]
    op = migrations.AlterField("review", "target", RELATIONS["foreign_key"]())
    assert fired([op], deployed("char"), unit_before=unit_before) == {"C109"}


def test_flags_relation_pointed_at_another_table_in_s0() -> None:
    before = [*deployed("char"), review(RELATIONS["foreign_key"]())]
    op = migrations.AlterField("review", "target", RELATIONS["foreign_key"]("shop.category"))
    assert fired([op], before) == {"C109"}


def test_ignores_alter_field_that_keeps_the_same_reference() -> None:
    before = [*deployed("char"), review(RELATIONS["foreign_key"]())]
    op = migrations.AlterField("review", "target", RELATIONS["foreign_key"](related_name="+"))
    assert fired([op], before) == set()


@pytest.mark.skipif(not hasattr(models, "DB_CASCADE"), reason="needs database-level on_delete")
def test_ignores_database_level_on_delete() -> None:
    field = models.ForeignKey("shop.product", models.DB_CASCADE)  # type: ignore[attr-defined]
    assert fired([review(field)], deployed("char")) == set()


def test_recipe_names_the_target_table() -> None:
    (finding,) = judge([review(RELATIONS["foreign_key"]())], deployed("char"), rules=COMPAT)
    assert any('REFERENCES "shop_product"' in step for step in finding.recipe)
    assert "db_constraint=False" in finding.help


# -- graded by how soon rows reference parents -----------------------------------------------


def c109(operations: Sequence[Operation], before: Sequence[Operation], **kw: Any) -> list[str]:
    found = judge(operations, before, rules=COMPAT, **kw)
    return [f.severity.name for f in found if f.rule == "C109"]


@pytest.mark.parametrize("kind", sorted(RELATIONS))
def test_informs_on_a_new_model_its_rows_come_only_from_the_new_release(kind: str) -> None:
    findings = judge([review(RELATIONS[kind]())], deployed("char"), rules=COMPAT)
    assert [(f.rule, f.severity) for f in findings] == [("C109", Severity.INFO)]
    assert "only if the new release writes" in findings[0].message


@pytest.mark.parametrize(
    "field",
    [
        lambda: models.ForeignKey("shop.category", models.CASCADE, null=True),
        lambda: models.ForeignKey("shop.category", models.SET_NULL, null=True, default=None),
        lambda: models.OneToOneField("shop.category", models.CASCADE, null=True),
        lambda: models.ManyToManyField("shop.category"),
        lambda: models.ForeignKey("shop.category", models.CASCADE, null=True, db_default=None),
    ],
    ids=[
        "nullable_fk",
        "nullable_fk_default_none",
        "nullable_one_to_one",
        "many_to_many",
        "nullable_fk_db_default_none",
    ],
)
def test_informs_on_a_new_column_existing_rows_hold_null_in(
    field: Callable[[], models.Field[Any, Any]],
) -> None:
    op = migrations.AddField("product", "main", field())
    assert c109([op], deployed("char")) and set(c109([op], deployed("char"))) == {"INFO"}


@pytest.mark.parametrize(
    "field",
    [
        lambda: models.ForeignKey("shop.category", models.CASCADE, default=1),
        lambda: models.ForeignKey("shop.category", models.CASCADE, null=True, default=1),
        lambda: models.ForeignKey("shop.category", models.CASCADE, db_default=1),
        lambda: models.OneToOneField("shop.category", models.CASCADE, default=1),
    ],
    ids=["fk_default", "nullable_fk_default", "fk_db_default", "one_to_one_default"],
)
def test_warns_on_a_new_column_that_fills_existing_rows(
    field: Callable[[], models.Field[Any, Any]],
) -> None:
    op = migrations.AddField("product", "main", field())
    assert c109([op], deployed("char")) == ["WARNING"]


def test_informs_on_a_column_with_a_default_added_to_a_table_new_in_the_unit() -> None:
    ops = [
        migrations.CreateModel("Box", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField(
            "box", "main", models.ForeignKey("shop.category", models.CASCADE, default=1)
        ),
    ]
    assert c109(ops, deployed("char")) == ["INFO"]


def test_warns_when_an_existing_column_becomes_a_foreign_key() -> None:
    before = [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("main", models.BigIntegerField(null=True, db_column="main_id")),
            ],
        ),
    ]
    op = migrations.AlterField(
        "product", "main", models.ForeignKey("shop.category", models.CASCADE, null=True)
    )
    assert c109([op], before) == ["WARNING"]


def test_informs_when_a_column_added_earlier_in_the_unit_becomes_a_foreign_key() -> None:
    earlier = [migrations.AddField("product", "main", models.BigIntegerField(null=True))]
    op = migrations.AlterField(
        "product", "main", models.ForeignKey("shop.category", models.CASCADE, null=True)
    )
    assert c109([op], deployed("char"), unit_before=[earlier]) == ["INFO"]
