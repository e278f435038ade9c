"""C107: NOT NULL set on a column the old release may write NULL into."""

from __future__ import annotations

from typing import Any

import pytest
from _compat import COMPAT, FIELDS, fired
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")


def nullable(kind: str) -> models.Field[Any, Any]:
    field = FIELDS[kind]()
    field.null = True
    return field


def required(kind: str, **attrs: Any) -> models.Field[Any, Any]:
    field = FIELDS[kind]()
    field.null = False
    for name, value in attrs.items():
        setattr(field, name, value)
    return field


def s0_with(field: models.Field[Any, Any]) -> list[Operation]:
    return [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product", [("id", models.BigAutoField(primary_key=True)), ("extra", field)]
        ),
    ]


def s0_nullable(kind: str) -> list[Operation]:
    return s0_with(nullable(kind))


NULLABLE_KINDS = sorted(k for k in FIELDS if k != "db_default")


@pytest.mark.parametrize("kind", NULLABLE_KINDS)
def test_flags_not_null_on_column_nullable_in_s0(kind: str) -> None:
    findings = judge(
        [migrations.AlterField("product", "extra", required(kind))], s0_nullable(kind), rules=COMPAT
    )
    assert {f.rule for f in findings} == {"C107"}
    assert "becomes NOT NULL" in findings[0].message


@pytest.mark.parametrize("kind", ["char", "integer", "boolean", "uuid"])
def test_flags_even_with_db_default(kind: str) -> None:
    default = {"char": "", "integer": 0, "boolean": False, "uuid": None}[kind]
    field = required(kind) if default is None else required(kind, db_default=default)
    if default is None:
        field = models.UUIDField(db_default=models.Value("00000000-0000-0000-0000-000000000000"))
    assert fired([migrations.AlterField("product", "extra", field)], s0_nullable(kind)) == {"C107"}


@pytest.mark.parametrize("kind", NULLABLE_KINDS)
def test_ignores_column_already_not_null_in_s0(kind: str) -> None:
    ops = [migrations.AlterField("product", "extra", required(kind, blank=True))]
    assert "C107" not in fired(ops, s0_with(required(kind)))


@pytest.mark.parametrize("kind", NULLABLE_KINDS)
def test_ignores_column_added_nullable_in_same_unit(kind: str) -> None:
    # Added nullable and made NOT NULL inside the unit: a new column (C101), not C107.
    unit_before = [[migrations.AddField("product", "fresh", nullable(kind))]]
    ops = [migrations.AlterField("product", "fresh", required(kind))]
    assert "C107" not in fired(ops, s0_nullable("char"), unit_before=unit_before)


@pytest.mark.parametrize("kind", NULLABLE_KINDS)
def test_ignores_table_created_in_same_unit(kind: str) -> None:
    before = s0_nullable(kind)
    ops = [migrations.AlterField("product", "extra", required(kind))]
    assert fired(ops, before[:1], unit_before=[before[1:]]) == set()


@pytest.mark.parametrize("kind", NULLABLE_KINDS)
def test_ignores_making_a_column_nullable(kind: str) -> None:
    ops = [migrations.AlterField("product", "extra", nullable(kind))]
    assert fired(ops, s0_with(required(kind))) == set()


def test_ignores_state_only_not_null() -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField("product", "extra", required("char"))]
    )
    assert fired([op], s0_nullable("char")) == set()


def test_flags_database_only_not_null() -> None:
    op = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.AlterField("product", "extra", required("char"))]
    )
    assert fired([op], s0_nullable("char")) == {"C107"}


def test_flags_once_when_a_later_alteration_keeps_not_null() -> None:
    unit_before = [[migrations.AlterField("product", "extra", required("char"))]]
    ops = [migrations.AlterField("product", "extra", models.CharField(max_length=200))]
    assert "C107" not in fired(ops, s0_nullable("char"), unit_before=unit_before)


def test_follows_a_rename_earlier_in_the_unit() -> None:
    unit_before = [[migrations.RenameField("product", "extra", "label")]]
    ops = [migrations.AlterField("product", "label", required("char"))]
    assert "C107" in fired(ops, s0_nullable("char"), unit_before=unit_before)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ALTER TABLE shop_product ALTER COLUMN extra SET NOT NULL", {"C107"}),
        (
            'ALTER TABLE "shop_product" ADD CONSTRAINT nn CHECK ("extra" IS NOT NULL) NOT VALID',
            {"C107"},
        ),
        ("ALTER TABLE shop_product ADD CONSTRAINT nn CHECK (extra IS NOT NULL)", {"C107"}),
        ("ALTER TABLE shop_product ALTER COLUMN ghost SET NOT NULL", set()),
        ("ALTER TABLE shop_product ALTER COLUMN id SET NOT NULL", set()),
        ("ALTER TABLE shop_product ALTER COLUMN extra DROP NOT NULL", set()),
    ],
)
def test_run_sql_not_null(sql: str, expected: set[str]) -> None:
    assert fired([migrations.RunSQL(sql)], s0_nullable("char")) == expected
