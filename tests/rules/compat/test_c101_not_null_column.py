"""C101: a NOT NULL column the old release's INSERTs omit, held against PostgreSQL."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from _compat import fired
from _sql import django_sql, pg_schema
from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models.functions import Now

pytestmark = pytest.mark.usefixtures("django_settings")


def deployed() -> list[Operation]:
    return [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("name", models.CharField(max_length=100)),
            ],
        ),
    ]


Make = Callable[[], "models.Field[Any, Any]"]

# Fields added NOT NULL whose value lives only in Python: the old release's INSERT fails.
FIRES: dict[str, Make] = {
    "integer_default": lambda: models.IntegerField(default=0),
    "char_default": lambda: models.CharField(max_length=10, default="x"),
    "boolean_default": lambda: models.BooleanField(default=False),
    "callable_default": lambda: models.DateField(default=datetime.date.today),
    "blank_char": lambda: models.CharField(max_length=10, blank=True),
    "auto_now_add": lambda: models.DateTimeField(auto_now_add=True),
    "foreign_key_default": lambda: models.ForeignKey("shop.Category", models.CASCADE, default=1),
    # DEFAULT NULL is a database default that fills nothing.
    "db_default_none": lambda: models.IntegerField(db_default=None, default=0),
    "db_default_value_none": lambda: models.IntegerField(db_default=models.Value(None), default=0),
}

# The database fills the column, or it may stay NULL: the old release's INSERT succeeds.
SILENT: dict[str, Make] = {
    "nullable": lambda: models.IntegerField(null=True),
    "nullable_default": lambda: models.IntegerField(null=True, default=0),
    "db_default": lambda: models.IntegerField(db_default=0, default=0),
    "db_default_expression": lambda: models.DateTimeField(db_default=Now()),
    "nullable_foreign_key": lambda: models.ForeignKey("shop.Category", models.CASCADE, null=True),
    "generated": lambda: models.GeneratedField(
        expression=models.F("id") * 2, output_field=models.BigIntegerField(), db_persist=True
    ),
}

CASES = {
    **{name: (make, True) for name, make in FIRES.items()},
    **{name: (make, False) for name, make in SILENT.items()},
}


def old_release_insert_fails(operations: list[Operation]) -> bool:
    """Apply ``operations`` to the deployed tables, then insert a row as the old model does."""
    state = ProjectState()
    with pg_schema() as pg:
        for statement in django_sql(deployed(), state):
            pg.execute(statement)
        pg.execute("INSERT INTO shop_category (id) VALUES (1)")
        for statement in django_sql(operations, state):
            pg.execute(statement)
        try:
            pg.execute("INSERT INTO shop_product (name) VALUES ('old release')")
        except psycopg.errors.NotNullViolation:
            return True
        return False


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_flags_exactly_the_added_columns_old_inserts_fail_on(case: tuple[Make, bool]) -> None:
    make, fails = case
    assert ("C101" in fired([migrations.AddField("product", "added", make())], deployed())) is fails
    assert old_release_insert_fails([migrations.AddField("product", "added", make())]) is fails


@pytest.mark.parametrize(
    ("make", "fails"),
    [
        (lambda: models.IntegerField(default=0), True),
        (lambda: models.IntegerField(db_default=None, default=0), True),
        (lambda: models.IntegerField(db_default=0, default=0), False),
    ],
    ids=["python_default", "db_default_none", "db_default"],
)
def test_flags_a_column_added_nullable_then_made_not_null_in_the_unit(
    make: Make, fails: bool
) -> None:
    def ops() -> list[Operation]:
        return [
            migrations.AddField("product", "added", models.IntegerField(null=True)),
            migrations.RunSQL("UPDATE shop_product SET added = 0", migrations.RunSQL.noop),
            migrations.AlterField("product", "added", make()),
        ]

    assert ("C101" in fired(ops(), deployed())) is fails
    assert old_release_insert_fails(ops()) is fails


def test_ignores_a_table_new_in_the_unit() -> None:
    ops = [
        migrations.CreateModel("Box", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField("box", "added", models.IntegerField(default=0)),
    ]
    assert "C101" not in fired(ops, deployed())


def test_ignores_a_column_that_was_in_s0() -> None:
    before = [
        *deployed()[:1],
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("added", models.IntegerField(null=True)),
            ],
        ),
    ]
    # The old release knows the column: C107 judges what it writes, not C101.
    assert "C101" not in fired(
        [migrations.AlterField("product", "added", models.IntegerField(default=0))], before
    )


@pytest.mark.parametrize("away", ["rename", "remove"])
def test_ignores_a_column_added_anew_under_a_name_the_old_release_writes(away: str) -> None:
    # pretix's 0070: ``country`` renamed to ``country_old``, then a new NOT NULL ``country``.
    # The old release's INSERTs name ``country``: they fill the new column, and what they
    # meet instead is C103's (or C102's), not a NOT NULL column they omit.
    def ops() -> list[Operation]:
        first: Operation = (
            migrations.RenameField("product", "name", "name_old")
            if away == "rename"
            else migrations.RemoveField("product", "name")
        )
        return [
            first,
            migrations.AddField("product", "name", models.CharField(max_length=100, default="x")),
        ]

    assert "C101" not in fired(ops(), deployed())
    state = ProjectState()
    with pg_schema() as pg:
        for statement in django_sql(deployed(), state):
            pg.execute(statement)
        for statement in django_sql(ops(), state):
            pg.execute(statement)
        try:
            pg.execute("INSERT INTO shop_product (name) VALUES ('old release')")
        except psycopg.errors.NotNullViolation as exc:
            # The renamed column, which the old release no longer fills: C103's re-added case.
            assert (away, exc.diag.column_name) == ("rename", "name_old")
    # A column of a name the old release never had still fires.
    assert "C101" in fired(
        [migrations.AddField("product", "other", models.CharField(max_length=100, default="x"))],
        deployed(),
    )
