"""The operation-to-statement mapping agrees with the SQL Django really emits."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.state import ProjectState

from django_rollout.findings import Finding
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import K, Step, steps_for
from django_rollout.testing import judge, make_migration

BEFORE = [
    migrations.CreateModel(
        "Category",
        [("id", models.BigAutoField(primary_key=True)), ("name", models.CharField(max_length=10))],
    ),
    migrations.CreateModel(
        "Product",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
            ("qty", models.IntegerField(null=True)),
            ("cat", models.ForeignKey("Category", models.CASCADE, null=True)),
            ("tags", models.ManyToManyField("Category", related_name="+")),
        ],
    ),
]

CASES: dict[str, list[Any]] = {
    "char db_index": [
        migrations.AddField(
            "product", "sku", models.CharField(max_length=10, db_index=True, null=True)
        )
    ],
    "char unique": [
        migrations.AddField(
            "product", "sku", models.CharField(max_length=10, unique=True, null=True)
        )
    ],
    "int unique default": [
        migrations.AddField("product", "code", models.IntegerField(unique=True, default=1))
    ],
    "positive int": [
        migrations.AddField("product", "weight", models.PositiveIntegerField(default=0))
    ],
    "fk": [
        migrations.AddField(
            "product", "owner", models.ForeignKey("Category", models.CASCADE, null=True)
        )
    ],
    "fk default": [
        migrations.AddField(
            "product", "owner", models.ForeignKey("Category", models.CASCADE, default=1)
        )
    ],
    "fk no index": [
        migrations.AddField(
            "product",
            "owner",
            models.ForeignKey("Category", models.CASCADE, null=True, db_index=False),
        )
    ],
    "fk no constraint": [
        migrations.AddField(
            "product",
            "owner",
            models.ForeignKey("Category", models.CASCADE, null=True, db_constraint=False),
        )
    ],
    "one to one": [
        migrations.AddField(
            "product", "owner", models.OneToOneField("Category", models.CASCADE, null=True)
        )
    ],
    "int to bigint": [migrations.AlterField("product", "qty", models.BigIntegerField(null=True))],
    "not null with default": [
        migrations.AlterField("product", "qty", models.IntegerField(default=0))
    ],
    "not null": [migrations.AlterField("product", "qty", models.IntegerField())],
    "alter db_index": [
        migrations.AlterField("product", "qty", models.IntegerField(null=True, db_index=True))
    ],
    "alter unique": [
        migrations.AlterField("product", "qty", models.IntegerField(null=True, unique=True))
    ],
    "alter char db_index": [
        migrations.AlterField("product", "name", models.CharField(max_length=100, db_index=True))
    ],
    "alter char unique": [
        migrations.AlterField("product", "name", models.CharField(max_length=100, unique=True))
    ],
    "int to fk": [
        migrations.AlterField(
            "product",
            "qty",
            models.ForeignKey("Category", models.CASCADE, null=True, db_column="qty"),
        )
    ],
    "fk constraint off": [
        migrations.AlterField(
            "product",
            "cat",
            models.ForeignKey("Category", models.CASCADE, null=True, db_constraint=False),
        )
    ],
    "fk made required": [
        migrations.AlterField("product", "cat", models.ForeignKey("Category", models.CASCADE))
    ],
    "fk on_delete only": [
        migrations.AlterField(
            "product", "cat", models.ForeignKey("Category", models.PROTECT, null=True)
        )
    ],
    "int to positive": [
        migrations.AlterField("product", "qty", models.PositiveIntegerField(null=True))
    ],
    "remove fk": [migrations.RemoveField("product", "cat")],
    "remove m2m": [migrations.RemoveField("product", "tags")],
    "delete model": [migrations.DeleteModel("product")],
    "unique constraint": [
        migrations.AddConstraint("product", models.UniqueConstraint(fields=["name"], name="u1"))
    ],
    "partial unique": [
        migrations.AddConstraint(
            "product",
            models.UniqueConstraint(fields=["name"], name="u2", condition=models.Q(qty__gt=0)),
        )
    ],
    "check": [
        migrations.AddConstraint(
            "product", models.CheckConstraint(condition=models.Q(qty__gte=0), name="c1")
        )
    ],
    "unique together": [migrations.AlterUniqueTogether("product", {("name", "qty")})],
    "add index": [migrations.AddIndex("product", models.Index(fields=["name"], name="i1"))],
    "volatile db_default": [
        migrations.AddField(
            "product",
            "u",
            models.UUIDField(db_default=models.Func(function="gen_random_uuid"), null=True),
        )
    ],
    "stable db_default": [
        migrations.AddField("product", "t", models.DateTimeField(db_default=models.functions.Now()))
    ],
    "literal db_default": [
        migrations.AddField("product", "f", models.BooleanField(db_default=False, default=False))
    ],
    "not null default": [migrations.AddField("product", "n", models.IntegerField(default=0))],
    "create model": [
        migrations.CreateModel(
            "Review",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("p", models.ForeignKey("Product", models.CASCADE)),
            ],
        )
    ],
    "varchar widening": [
        migrations.AlterField("product", "name", models.CharField(max_length=200))
    ],
    "varchar to text": [migrations.AlterField("product", "name", models.TextField())],
    "rename field": [migrations.RenameField("product", "name", "title")],
}

if hasattr(models, "DB_CASCADE"):
    # Django 6.1+: on_delete values the database enforces are part of the constraint.
    CASES |= {
        "fk on_delete moved to the database": [
            migrations.AlterField(
                "product", "cat", models.ForeignKey("Category", models.DB_CASCADE, null=True)
            )
        ],
        "fk db_set_null": [
            migrations.AddField(
                "product", "owner", models.ForeignKey("Category", models.DB_SET_NULL, null=True)
            )
        ],
    }


class _Recorder(Rule):
    id = "L399"
    name = "statement-recorder"
    message = "x"
    help = "x"
    steps: list[Step] = []

    def check_operation(self, ctx: OperationContext) -> list[Finding]:
        type(self).steps.extend(steps_for(ctx))
        return []


def mapped(operations: list[Any]) -> set[tuple[str, str, bool]]:
    _Recorder.steps = []
    judge(operations, BEFORE, rules=[_Recorder])
    # The inline foreign key of a column that is NULL everywhere is the same statement.
    return {
        (
            K.ADD_FOREIGN_KEY.name if s.kind is K.ADD_FOREIGN_KEY_NOT_VALID else s.kind.name,
            s.table,
            s.deferred,
        )
        for s in _Recorder.steps
    }


def emitted(operations: list[Any]) -> set[tuple[str, str, bool]]:
    from django_rollout.graph.runsql import parse_sql
    from django_rollout.graph.sql import collect_migration_sql

    state = ProjectState()
    for op in BEFORE:
        op.state_forwards("shop", state)
    collected = collect_migration_sql(make_migration("shop", "0002", operations), state)
    assert collected.error is None
    return {
        (action.kind.name, action.table, statement.deferred)
        for statement in collected.statements
        for action in parse_sql(statement.sql)
        if action.kind is not K.OTHER and action.table is not None
    }


@pytest.mark.parametrize("label", sorted(CASES))
def test_mapping_matches_the_sql_django_emits(label: str, django_settings: None) -> None:
    assert mapped(CASES[label]) == emitted(CASES[label])


@pytest.mark.skipif(not hasattr(models, "DB_CASCADE"), reason="Django < 6.1: no DB_CASCADE")
def test_on_delete_moved_to_the_database_rebuilds_the_constraint(django_settings: None) -> None:
    """CASCADE to DB_CASCADE changes ON DELETE in the constraint: Django drops and re-adds it."""
    operations = CASES["fk on_delete moved to the database"]
    assert emitted(operations) == {
        ("DROP_CONSTRAINT", "shop_product", False),
        ("ADD_FOREIGN_KEY", "shop_product", False),
    }
    assert mapped(operations) == emitted(operations)


def test_on_delete_in_python_only_emits_nothing(django_settings: None) -> None:
    assert emitted(CASES["fk on_delete only"]) == set() == mapped(CASES["fk on_delete only"])
