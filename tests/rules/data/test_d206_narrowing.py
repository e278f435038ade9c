"""D206: a narrowing type change on a column of S0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import pytest
from _sql import django_sql, pg_schema
from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]


def deployed(field: models.Field[Any, Any]) -> list[Operation]:
    return [
        migrations.CreateModel(
            "Product", [("id", models.BigAutoField(primary_key=True)), ("value", field)]
        )
    ]


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    rows: Mapping[str, int] | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
    vendor: str = "postgresql",
) -> list[Finding]:
    return judge(operations, before, rows=rows, unit_before=unit_before, rules=DATA, vendor=vendor)


NARROWING: dict[str, tuple[models.Field[Any, Any], models.Field[Any, Any]]] = {
    "shorter_varchar": (models.CharField(max_length=200), models.CharField(max_length=120)),
    "text_to_varchar": (models.TextField(), models.CharField(max_length=255)),
    "fewer_digits": (
        models.DecimalField(max_digits=12, decimal_places=2),
        models.DecimalField(max_digits=8, decimal_places=2),
    ),
    "fewer_decimal_places": (
        models.DecimalField(max_digits=12, decimal_places=4),
        models.DecimalField(max_digits=12, decimal_places=2),
    ),
    "bigint_to_int": (models.BigIntegerField(), models.IntegerField()),
    "int_to_smallint": (models.IntegerField(), models.SmallIntegerField()),
    "text_to_integer": (models.CharField(max_length=5), models.IntegerField()),
    "text_to_uuid": (models.CharField(max_length=36), models.UUIDField()),
    "integer_to_boolean": (models.IntegerField(), models.BooleanField()),
    "char_to_shorter_slug": (models.CharField(max_length=64), models.SlugField(max_length=50)),
}


@pytest.mark.parametrize(("old", "new"), NARROWING.values(), ids=NARROWING.keys())
def test_flags_narrowing_change_on_column_of_s0(
    old: models.Field[Any, Any], new: models.Field[Any, Any]
) -> None:
    found = findings([migrations.AlterField("product", "value", new)], deployed(old))
    [finding] = [f for f in found if f.rule == "D206"]
    assert {f.rule for f in found} <= {"D206", "D204"}  # BooleanField etc. add no check
    assert finding.severity is Severity.WARNING
    assert "`shop_product`.`value` narrows from" in finding.message


TO_JSON = {
    "text_to_jsonb": (models.TextField(), models.JSONField()),
    "varchar_to_jsonb": (models.CharField(max_length=500, blank=True), models.JSONField()),
}


@pytest.mark.parametrize(("old", "new"), TO_JSON.values(), ids=TO_JSON.keys())
def test_text_to_json_is_info_with_the_query_that_counts_misfits(
    old: models.Field[Any, Any], new: models.Field[Any, Any]
) -> None:
    found = findings([migrations.AlterField("product", "value", new)], deployed(old))
    [finding] = [f for f in found if f.rule == "D206"]
    assert finding.severity is Severity.INFO
    assert "not valid JSON" in finding.message
    assert "pg_input_is_valid(value, 'jsonb')" in finding.message
    sql = migrations.RunSQL(
        "ALTER TABLE shop_product ALTER COLUMN value TYPE jsonb USING value::jsonb"
    )
    [raw] = [f for f in findings([sql], deployed(old)) if f.rule == "D206"]
    assert raw.severity is Severity.INFO


def test_names_both_types() -> None:
    old, new = NARROWING["shorter_varchar"]
    [finding] = findings([migrations.AlterField("product", "value", new)], deployed(old))
    assert "`varchar(200)` to `varchar(120)`" in finding.message


WIDENING: dict[str, tuple[models.Field[Any, Any], models.Field[Any, Any]]] = {
    "longer_varchar": (models.CharField(max_length=100), models.CharField(max_length=255)),
    "varchar_to_text": (models.CharField(max_length=100), models.TextField()),
    "same_type_new_options": (
        models.CharField(max_length=100),
        models.CharField(max_length=100, null=True, blank=True, db_index=True),
    ),
    "more_digits": (
        models.DecimalField(max_digits=8, decimal_places=2),
        models.DecimalField(max_digits=12, decimal_places=2),
    ),
    "int_to_bigint": (models.IntegerField(), models.BigIntegerField()),
    "date_to_datetime": (models.DateField(), models.DateTimeField()),
    "integer_to_text": (models.IntegerField(), models.TextField()),
    "email_to_longer_char": (models.EmailField(), models.CharField(max_length=320)),
    "json_unchanged": (models.JSONField(), models.JSONField(default=dict)),
    "uuid_unchanged": (models.UUIDField(), models.UUIDField(unique=True)),
}


@pytest.mark.parametrize(("old", "new"), WIDENING.values(), ids=WIDENING.keys())
def test_ignores_widening_or_same_type(
    old: models.Field[Any, Any], new: models.Field[Any, Any]
) -> None:
    found = findings([migrations.AlterField("product", "value", new)], deployed(old))
    assert "D206" not in {f.rule for f in found}


def test_ignores_foreign_key_columns() -> None:
    before = [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        *deployed(models.ForeignKey("shop.Category", models.CASCADE)),
    ]
    op = migrations.AlterField(
        "product", "value", models.ForeignKey("shop.Category", models.PROTECT, null=True)
    )
    assert "D206" not in {f.rule for f in findings([op], before)}


def test_ignores_table_created_in_the_unit() -> None:
    old, new = NARROWING["shorter_varchar"]
    op = migrations.AlterField("product", "value", new)
    assert findings([op], unit_before=[deployed(old)]) == []


def test_ignores_column_added_in_the_unit() -> None:
    unit_before = [[migrations.AddField("product", "extra", models.TextField(null=True))]]
    op = migrations.AlterField("product", "extra", models.CharField(max_length=10, null=True))
    assert findings([op], deployed(models.IntegerField()), unit_before=unit_before) == []


def test_ignores_state_only_change() -> None:
    old, new = NARROWING["shorter_varchar"]
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField("product", "value", new)]
    )
    assert findings([op], deployed(old)) == []


def test_follows_a_rename_earlier_in_the_unit() -> None:
    old, new = NARROWING["bigint_to_int"]
    unit_before = [[migrations.RenameField("product", "value", "amount")]]
    op = migrations.AlterField("product", "amount", new)
    [finding] = findings([op], deployed(old), unit_before=unit_before)
    assert finding.rule == "D206"


def test_downgrades_to_info_on_an_empty_table() -> None:
    old, new = NARROWING["shorter_varchar"]
    found = findings(
        [migrations.AlterField("product", "value", new)], deployed(old), rows={"shop_product": 0}
    )
    assert [(f.rule, f.severity) for f in found] == [("D206", Severity.INFO)]


def test_flags_runsql_alter_type_narrowing() -> None:
    op = migrations.RunSQL("ALTER TABLE shop_product ALTER COLUMN value TYPE varchar(3)")
    [finding] = findings([op], deployed(models.CharField(max_length=8)))
    assert finding.rule == "D206" and "`varchar(8)` to `varchar(3)`" in finding.message


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE shop_product ALTER COLUMN value TYPE varchar(20)",
        "ALTER TABLE shop_product ALTER COLUMN value TYPE text",
        "ALTER TABLE other_table ALTER COLUMN value TYPE varchar(1)",
    ],
    ids=["wider", "text", "unknown_table"],
)
def test_ignores_runsql_alter_type_that_does_not_narrow(sql: str) -> None:
    assert findings([migrations.RunSQL(sql)], deployed(models.CharField(max_length=8))) == []


def test_ignores_shorter_varchar_on_sqlite_which_does_not_enforce_lengths() -> None:
    old, new = NARROWING["shorter_varchar"]
    op = migrations.AlterField("product", "value", new)
    assert findings([op], deployed(old), vendor="sqlite") == []


def test_flags_text_to_integer_on_sqlite() -> None:
    old, new = NARROWING["text_to_integer"]
    op = migrations.AlterField("product", "value", new)
    assert [f.rule for f in findings([op], deployed(old), vendor="sqlite")] == ["D206"]


# -- held against PostgreSQL running Django's SQL over an existing value ---------------------

Case = tuple["models.Field[Any, Any]", "models.Field[Any, Any]", str, str]

ON_POSTGRESQL: dict[str, Case] = {
    # (old field, new field, an existing value, what PostgreSQL does with it)
    "shorter_varchar": (
        models.CharField(max_length=200),
        models.CharField(max_length=120),
        "'" + "x" * 150 + "'",
        "fails",
    ),
    "email_to_shorter_char": (
        models.EmailField(),
        models.CharField(max_length=10),
        "'" + "x" * 20 + "'",
        "fails",
    ),
    "fewer_integer_digits": (
        models.DecimalField(max_digits=7, decimal_places=2),
        models.DecimalField(max_digits=7, decimal_places=4),
        "12345.67",
        "fails",
    ),
    "bigint_to_int": (models.BigIntegerField(), models.IntegerField(), "2199023255552", "fails"),
    "text_to_integer": (models.CharField(max_length=5), models.IntegerField(), "'abc'", "fails"),
    "boolean_to_smallint": (
        models.BooleanField(),
        models.SmallIntegerField(),
        "true",
        "fails",
    ),
    "text_to_varchar": (
        models.TextField(),
        models.CharField(max_length=255),
        "'" + "x" * 300 + "'",
        "cut",
    ),
    "char_to_shorter_slug": (
        models.CharField(max_length=64),
        models.SlugField(max_length=50),
        "'" + "x" * 60 + "'",
        "cut",
    ),
    "integer_to_short_varchar": (
        models.IntegerField(),
        models.CharField(max_length=3),
        "12345",
        "cut",
    ),
    "date_to_short_varchar": (
        models.DateField(),
        models.CharField(max_length=8),
        "'2024-01-31'",
        "cut",
    ),
    "fewer_decimal_places": (
        models.DecimalField(max_digits=12, decimal_places=4),
        models.DecimalField(max_digits=12, decimal_places=2),
        "1.2345",
        "rounded",
    ),
    "integer_to_boolean": (models.IntegerField(), models.BooleanField(), "5", "lossy"),
    "datetime_to_date": (
        models.DateTimeField(),
        models.DateField(),
        "'2024-01-31 13:00+00'",
        "lossy",
    ),
    "boolean_to_integer": (models.BooleanField(), models.IntegerField(), "true", "kept"),
    "date_to_varchar": (
        models.DateField(),
        models.CharField(max_length=50),
        "'2024-01-31'",
        "kept",
    ),
    "uuid_to_varchar": (
        models.UUIDField(),
        models.CharField(max_length=36),
        "'6f1c3e2a-0b1d-4c5e-9f00-123456789abc'",
        "kept",
    ),
    "bigint_to_varchar": (
        models.BigIntegerField(),
        models.CharField(max_length=20),
        "-9223372036854775808",
        "kept",
    ),
    "longer_varchar": (
        models.CharField(max_length=100),
        models.CharField(max_length=255),
        "'" + "x" * 100 + "'",
        "kept",
    ),
}

MESSAGES = {
    "fails": "fails the migration",
    "cut": "an explicit cast that silently cuts every existing value longer than",
    "rounded": "decimal places is silently rounded",
    "lossy": "the conversion never fails, but",
}


@pytest.mark.parametrize("case", ON_POSTGRESQL.values(), ids=ON_POSTGRESQL.keys())
def test_says_what_postgresql_does_with_the_existing_value(case: Case) -> None:
    old, new, value, outcome = case
    found = [
        f
        for f in findings([migrations.AlterField("product", "value", new.clone())], deployed(old))
        if f.rule == "D206"
    ]
    if outcome == "kept":
        assert found == []
    else:
        [finding] = found
        assert MESSAGES[outcome] in finding.message, finding.message
        assert all(MESSAGES[o] not in finding.message for o in MESSAGES if o != outcome)
    state = ProjectState()
    with pg_schema() as pg:
        for statement in django_sql(deployed(old.clone()), state):
            pg.execute(statement)
        pg.execute(f"INSERT INTO shop_product (value) VALUES ({value})")
        before = pg.execute("SELECT value::text FROM shop_product").fetchone()[0]
        statements = django_sql([migrations.AlterField("product", "value", new.clone())], state)
        try:
            with pg.transaction():
                for statement in statements:
                    pg.execute(statement)
        except psycopg.Error:
            assert outcome == "fails"
            return
        assert outcome != "fails"
        after = pg.execute("SELECT value::text FROM shop_product").fetchone()[0]
        if outcome == "kept":
            # The same value, in the new type's spelling.
            assert after == before or (before, after) == ("true", "1"), (before, after)
        else:
            assert after != before, (before, after)  # cut, rounded, or made something else
