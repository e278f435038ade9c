"""The operation-to-statement mapping agrees with the SQL Django really emits."""

from __future__ import annotations

from collections import Counter
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
    # A new comment comes with an ALTER COLUMN ... TYPE of the same type (ACCESS EXCLUSIVE).
    "comment": [
        migrations.AlterField("product", "qty", models.IntegerField(null=True, db_comment="n"))
    ],
    "comment on fk": [
        migrations.AlterField(
            "product",
            "cat",
            models.ForeignKey("Category", models.CASCADE, null=True, db_comment="c"),
        )
    ],
    "db_column": [
        migrations.AlterField("product", "qty", models.IntegerField(null=True, db_column="q"))
    ],
    "fk db_column": [
        migrations.AlterField(
            "product",
            "cat",
            models.ForeignKey("Category", models.CASCADE, null=True, db_column="c"),
        )
    ],
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


def mapped(operations: list[Any], before: list[Any] = BEFORE) -> set[tuple[str, str, bool]]:
    _Recorder.steps = []
    judge(operations, before, rules=[_Recorder])
    # The inline foreign key of a column that is NULL everywhere is the same statement.
    return {
        (
            K.ADD_FOREIGN_KEY.name if s.kind is K.ADD_FOREIGN_KEY_NOT_VALID else s.kind.name,
            s.table,
            s.deferred,
        )
        for s in _Recorder.steps
    }


def emitted_actions(operations: list[Any], before: list[Any] = BEFORE) -> list[Any]:
    from django_rollout.graph.runsql import parse_sql
    from django_rollout.graph.sql import collect_migration_sql

    state = ProjectState()
    for op in before:
        op.state_forwards("shop", state)
    collected = collect_migration_sql(make_migration("shop", "0002", operations), state)
    assert collected.error is None
    return [
        (action.kind.name, action.table, statement.deferred)
        for statement in collected.statements
        for action in parse_sql(statement.sql)
        if action.kind is not K.OTHER and action.table is not None
    ]


def emitted(operations: list[Any], before: list[Any] = BEFORE) -> set[tuple[str, str, bool]]:
    return set(emitted_actions(operations, before))


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


# RenameModel alters what the old model's ``related_objects`` lists: foreign keys whose reverse
# side is hidden (``related_name="+"``) are left out, hidden many-to-many fields are kept.
RENAME_BEFORE = [
    migrations.CreateModel(
        "Revision0",
        [
            ("id", models.AutoField(primary_key=True)),
            ("parent", models.ForeignKey("shop.Revision0", models.CASCADE, null=True)),
            (
                "hidden_parent",
                models.ForeignKey("self", models.CASCADE, null=True, related_name="+"),
            ),
            ("peers", models.ManyToManyField("self", symmetrical=False)),
            ("cats", models.ManyToManyField("shop.Category")),
        ],
    ),
    migrations.CreateModel(
        "Category",
        [("id", models.AutoField(primary_key=True))],
        options={"db_table": "category"},
    ),
    migrations.CreateModel(
        "Page",
        [
            ("id", models.AutoField(primary_key=True)),
            ("latest", models.ForeignKey("shop.Revision0", models.SET_NULL, null=True)),
            ("cat", models.ForeignKey("shop.Category", models.SET_NULL, null=True)),
            ("revisions", models.ManyToManyField("shop.Revision0", related_name="+")),
        ],
    ),
    # Only hidden foreign keys point from this table to Revision0.
    migrations.CreateModel(
        "Site",
        [
            ("id", models.AutoField(primary_key=True)),
            (
                "live",
                models.ForeignKey("shop.Revision0", models.SET_NULL, null=True, related_name="+"),
            ),
            (
                "first",
                models.OneToOneField(
                    "shop.Revision0", models.SET_NULL, null=True, related_name="site_first+"
                ),
            ),
            ("cats", models.ManyToManyField("shop.Category", db_table="site_categories")),
        ],
    ),
]

RENAME_CASES: dict[str, list[Any]] = {
    "rename model": [migrations.RenameModel("Revision0", "Revision")],
    "rename model with a fixed db_table": [migrations.RenameModel("Category", "Kind")],
    "rename model referenced by hidden keys only": [migrations.RenameModel("Page", "WebPage")],
    "alter model table": [migrations.AlterModelTable("Revision0", "revisions")],
}


def mapped_counts(operations: list[Any]) -> Counter[tuple[str, str, bool]]:
    mapped(operations, RENAME_BEFORE)
    return Counter((s.kind.name, s.table, s.deferred) for s in _Recorder.steps)


@pytest.mark.parametrize("label", sorted(RENAME_CASES))
def test_rename_mapping_matches_the_sql_django_emits(label: str, django_settings: None) -> None:
    operations = RENAME_CASES[label]
    assert mapped_counts(operations) == Counter(emitted_actions(operations, RENAME_BEFORE))


def test_rename_model_leaves_hidden_foreign_keys_alone(django_settings: None) -> None:
    operations = RENAME_CASES["rename model"]
    steps = mapped_counts(operations)
    assert ("ADD_FOREIGN_KEY", "shop_page", False) in steps  # a normal foreign key
    assert ("ADD_FOREIGN_KEY", "shop_revision", False) in steps  # a normal self reference
    assert steps[("ADD_FOREIGN_KEY", "shop_revision", False)] == 1  # not the hidden one
    assert ("ADD_FOREIGN_KEY", "shop_page_revisions", False) in steps  # hidden M2M is altered
    assert not any(table == "shop_site" for _, table, _ in steps)  # hidden FK and O2O
