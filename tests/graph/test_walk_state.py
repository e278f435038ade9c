"""WalkState: Django's ProjectState without the reference search of an unrendered alter_field."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.state import ProjectState

from django_rollout.graph.walk import WalkState

pytestmark = pytest.mark.usefixtures("django_settings")

OPERATIONS: list[Any] = [
    migrations.CreateModel(
        "Category",
        [("id", models.BigAutoField(primary_key=True)), ("code", models.CharField(max_length=9))],
    ),
    migrations.CreateModel(
        "Product",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=20)),
            ("category", models.ForeignKey("shop.category", models.CASCADE, to_field="code")),
        ],
    ),
    # A field a foreign key references, a plain field, a relation, a dropped default.
    migrations.AlterField("category", "code", models.CharField(max_length=12, unique=True)),
    migrations.AlterField("product", "name", models.CharField(max_length=40, default="x")),
    migrations.AlterField(
        "product", "category", models.ForeignKey("shop.category", models.PROTECT, null=True)
    ),
    migrations.AlterField(
        "product", "name", models.CharField(max_length=40, default="y"), preserve_default=False
    ),
]


def shape(state: ProjectState) -> dict[Any, Any]:
    return {
        key: [(name, field.deconstruct()[1:]) for name, field in model.fields.items()]
        for key, model in state.models.items()
    }


def walk(state: ProjectState) -> ProjectState:
    for op in OPERATIONS:
        op.state_forwards("shop", state)
    return state


def test_walk_state_equals_django_state_unrendered_and_rendered() -> None:
    expected = shape(walk(ProjectState()))
    assert shape(walk(WalkState())) == expected
    rendered = WalkState()
    rendered.apps  # noqa: B018 - render first: Django's own path must run
    assert shape(walk(rendered)) == expected
    model = rendered.apps.get_model("shop", "Product")
    assert model._meta.get_field("category").null is True


def test_clone_keeps_the_walk_state() -> None:
    state = walk(WalkState())
    copy = state.clone()
    assert isinstance(copy, WalkState) and shape(copy) == shape(state)



def renames() -> list[Any]:
    """Fresh operations per run: a state keeps the operation's field objects and Django's
    rename fixes references on them in place."""
    return [
        migrations.CreateModel(
            "Category",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("code", models.CharField(max_length=9, unique=True)),
            ],
        ),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("name", models.CharField(max_length=20)),
                ("category", models.ForeignKey("shop.category", models.CASCADE, to_field="code")),
            ],
        ),
        migrations.CreateModel(
            "Note",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("text", models.TextField()),
                ("product", models.ForeignKey("shop.product", models.CASCADE)),
            ],
        ),
        # The field a to_field foreign key points at: Django fixes the reference in Product.
        migrations.RenameField("category", "code", "slug"),
        migrations.RenameField("product", "name", "title"),
        migrations.RenameField("note", "text", "body"),
        # A primary key a foreign key points at without naming it.
        migrations.RenameField("product", "id", "ident"),
    ]


def test_rename_field_fixes_references_as_django_does() -> None:
    def run(state: ProjectState) -> ProjectState:
        for op in renames():
            op.state_forwards("shop", state)
        return state

    expected = run(ProjectState())
    got = run(WalkState())
    assert shape(got) == shape(expected)
    assert got.models["shop", "product"].fields["category"].to_fields == ("slug",)
    assert set(got.models) == {("shop", "category"), ("shop", "product"), ("shop", "note")}
    rendered = WalkState()
    rendered.apps  # noqa: B018 - render first: Django's own path must run
    assert shape(run(rendered)) == shape(expected)
