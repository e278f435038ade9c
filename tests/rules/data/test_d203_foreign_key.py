"""D203: a foreign key constraint added over values that may point nowhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]


def deployed(customer: models.Field[Any, Any]) -> list[Operation]:
    return [
        migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel("Shop", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Order",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("customer", customer),
            ],
        ),
    ]


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    rows: Mapping[str, int] | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
) -> list[Finding]:
    return judge(operations, before, rows=rows, unit_before=unit_before, rules=DATA)


def fk(to: str = "shop.Customer", **options: Any) -> models.ForeignKey[Any, Any]:
    return models.ForeignKey(to, models.CASCADE, **options)


UNCONSTRAINED: dict[str, models.Field[Any, Any]] = {
    "integer_column": models.BigIntegerField(db_column="customer_id"),
    "nullable_integer_column": models.BigIntegerField(null=True, db_column="customer_id"),
    "fk_without_constraint": fk(db_constraint=False),
    "one_to_one_without_constraint": models.OneToOneField(
        "shop.Customer", models.CASCADE, db_constraint=False
    ),
    "fk_to_another_table": fk("shop.Shop"),
}


@pytest.mark.parametrize("old", UNCONSTRAINED.values(), ids=UNCONSTRAINED.keys())
@pytest.mark.parametrize("new", [fk(), fk(null=True)], ids=["fk", "nullable_fk"])
def test_flags_constraint_added_over_existing_column(
    old: models.Field[Any, Any], new: models.Field[Any, Any]
) -> None:
    found = findings([migrations.AlterField("order", "customer", new)], deployed(old))
    # Only D202 may join in: a nullable column made NOT NULL without a default.
    others = {f.rule for f in found} - {"D203"}
    assert others == ({"D202"} if old.null and not new.null else set())
    [finding] = [f for f in found if f.rule == "D203"]
    assert finding.severity is Severity.WARNING
    assert "`shop_order`.`customer_id`" in finding.message
    assert "`shop_customer`" in finding.message


def test_flags_one_to_one_gaining_its_constraint() -> None:
    old = models.OneToOneField("shop.Customer", models.CASCADE, db_constraint=False)
    new = models.OneToOneField("shop.Customer", models.CASCADE)
    found = findings([migrations.AlterField("order", "customer", new)], deployed(old))
    assert [f.rule for f in found] == ["D203"]


@pytest.mark.parametrize(
    "new",
    [fk(null=True), fk(), fk(related_name="orders"), fk(db_constraint=False)],
    ids=["null_true", "not_null", "options_only", "still_unconstrained"],
)
def test_ignores_alter_that_keeps_or_drops_the_constraint(new: models.Field[Any, Any]) -> None:
    found = findings([migrations.AlterField("order", "customer", new)], deployed(fk(null=True)))
    assert "D203" not in {f.rule for f in found}


def test_ignores_table_created_in_the_unit() -> None:
    op = migrations.AlterField("order", "customer", fk())
    assert findings([op], unit_before=[deployed(fk(db_constraint=False))]) == []


def test_ignores_column_added_in_the_unit() -> None:
    unit_before = [
        [
            migrations.AddField(
                "order", "buyer", fk(null=True, db_constraint=False, related_name="+")
            )
        ]
    ]
    op = migrations.AlterField("order", "buyer", fk(null=True, related_name="+"))
    assert findings([op], deployed(fk()), unit_before=unit_before) == []


def test_ignores_state_only_constraint_with_not_valid_sql() -> None:
    op = migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                "ALTER TABLE shop_order ADD CONSTRAINT o_c_fk FOREIGN KEY (customer_id)"
                " REFERENCES shop_customer (id) DEFERRABLE INITIALLY DEFERRED NOT VALID"
            )
        ],
        state_operations=[migrations.AlterField("order", "customer", fk())],
    )
    assert findings([op], deployed(fk(db_constraint=False))) == []


def test_follows_a_rename_earlier_in_the_unit() -> None:
    unit_before = [[migrations.RenameField("order", "customer", "buyer")]]
    op = migrations.AlterField("order", "buyer", fk())
    [finding] = findings([op], deployed(fk(db_constraint=False)), unit_before=unit_before)
    assert finding.rule == "D203"


def test_downgrades_to_info_on_an_empty_table() -> None:
    op = migrations.AlterField("order", "customer", fk())
    found = findings([op], deployed(fk(db_constraint=False)), rows={"shop_order": 0})
    assert [(f.rule, f.severity) for f in found] == [("D203", Severity.INFO)]


# -- AddField ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        fk(default=1, related_name="+"),
        fk(null=True, default=1, related_name="+"),
        fk(db_default=1, related_name="+"),
    ],
    ids=["default", "nullable_with_default", "db_default"],
)
def test_flags_new_foreign_key_with_one_default_id_for_every_row(
    field: models.Field[Any, Any],
) -> None:
    [finding] = findings([migrations.AddField("order", "shop", field)], deployed(fk()))
    assert (finding.rule, finding.severity) == ("D203", Severity.WARNING)
    assert "every existing row" in finding.message and "`shop_customer`" in finding.message


@pytest.mark.parametrize(
    "field",
    [
        fk(null=True, related_name="+"),
        fk(default=1, db_constraint=False, related_name="+"),
        models.BigIntegerField(default=1),
    ],
    ids=["nullable_no_default", "no_constraint", "plain_integer"],
)
def test_ignores_new_column_whose_rows_cannot_dangle(field: models.Field[Any, Any]) -> None:
    assert findings([migrations.AddField("order", "shop", field)], deployed(fk())) == []


def test_ignores_new_foreign_key_with_default_on_table_created_in_the_unit() -> None:
    op = migrations.AddField("order", "shop", fk(default=1, related_name="+"))
    assert findings([op], unit_before=[deployed(fk())]) == []


# -- RunSQL ------------------------------------------------------------------------------


def test_flags_runsql_foreign_key_without_not_valid() -> None:
    op = migrations.RunSQL(
        "ALTER TABLE shop_order ADD CONSTRAINT o_c_fk FOREIGN KEY (customer_id)"
        " REFERENCES shop_customer (id)"
    )
    [finding] = findings([op], deployed(fk(db_constraint=False)))
    assert (finding.rule, finding.severity) == ("D203", Severity.WARNING)
    assert "`shop_order`.`customer_id`" in finding.message


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE shop_order ADD CONSTRAINT o_c_fk FOREIGN KEY (customer_id)"
        " REFERENCES shop_customer (id) NOT VALID",
        "ALTER TABLE shop_order VALIDATE CONSTRAINT o_c_fk",
        "ALTER TABLE shop_order ADD COLUMN shop_id bigint NULL REFERENCES shop_shop (id)",
        "ALTER TABLE other ADD CONSTRAINT x FOREIGN KEY (a_id) REFERENCES shop_customer (id)",
    ],
    ids=["not_valid", "validate", "new_column", "unknown_table"],
)
def test_ignores_runsql_that_checks_no_existing_values(sql: str) -> None:
    assert findings([migrations.RunSQL(sql)], deployed(fk(db_constraint=False))) == []
