"""A relation moved to a model that took its target's table over: no SQL, no finding.

Splitting an app in state only (``SeparateDatabaseAndState``) leaves a second model on the
old model's table; a foreign key moved to it (``AlterField(to=...)``) is the same foreign
key, and Django's schema editor emits nothing for it (seen in django-oscar 4.2,
``order.0008``). Every rule must stay silent; the same move to a model with a table of its
own is a new constraint and keeps its findings.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.rules.code.m405_data_and_schema_change_in_one_transaction import (
    DataAndSchemaChangeInOneTransaction as M405,
)
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

FIELDS = [("id", models.BigAutoField(primary_key=True)), ("name", models.CharField(max_length=9))]
BEFORE: list[Operation] = [
    migrations.CreateModel("Kind", list(FIELDS)),
    migrations.CreateModel(
        "Event",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("kind", models.ForeignKey("shop.Kind", models.CASCADE)),
        ],
    ),
]


def _archive(options: dict[str, Any]) -> list[Operation]:
    create = migrations.CreateModel("Kind", list(FIELDS), options=options)
    if options:  # the shop's table, taken over in state only
        return [migrations.SeparateDatabaseAndState(state_operations=[create])]
    return [create]


def _moved(**field: Any) -> list[Operation]:
    return [
        migrations.AlterField(
            "event", "kind", models.ForeignKey("archive.Kind", models.CASCADE, **field)
        )
    ]


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_a_relation_moved_to_a_model_on_the_same_table_is_silent(vendor: str) -> None:
    found = judge(
        _moved(),
        BEFORE,
        other_apps={"archive": _archive({"db_table": "shop_kind"})},
        rows={"shop_event": 10_000, "shop_kind": 100},
        vendor=vendor,
    )
    assert found == []


def test_a_relation_moved_to_a_table_of_its_own_is_still_a_new_constraint() -> None:
    found = judge(
        _moved(),
        BEFORE,
        other_apps={"archive": _archive({})},
        rows={"shop_event": 10_000, "shop_kind": 100},
    )
    assert {"D203", "C109", "L302"} <= {f.rule for f in found}


def test_the_same_table_with_another_change_is_judged_for_that_change() -> None:
    # Made nullable on the way: Django then drops and re-creates the foreign key (its
    # validation under lock is real, L302), but over the values the old constraint kept
    # valid (no D203) and to the table the old release knows (no C109).
    found = judge(
        _moved(null=True),
        BEFORE,
        other_apps={"archive": _archive({"db_table": "shop_kind"})},
        rows={"shop_event": 10_000, "shop_kind": 100},
    )
    rules = {f.rule for f in found}
    assert "L302" in rules and not rules & {"D203", "C109"}, found


def _add_events(apps: Any, schema_editor: Any) -> None:
    Event = apps.get_model("shop", "Event")
    kind = apps.get_model("shop", "Kind").objects.first()
    Event.objects.create(kind=kind, previous=kind)


@pytest.mark.parametrize(("options", "flagged"), [({"db_table": "shop_kind"}, False), ({}, True)])
def test_m405_after_a_write_is_silent_for_the_same_table_only(
    options: dict[str, Any], flagged: bool
) -> None:
    # An insert into shop_event leaves the checks of both its foreign keys pending. Moving
    # `kind` to a table of its own drops its constraint (Django makes that one immediate
    # first) and adds the new one: an ALTER TABLE, refused while `previous`'s checks wait.
    before = [
        *BEFORE,
        migrations.AddField(
            "event", "previous", models.ForeignKey("shop.Kind", models.CASCADE, related_name="+")
        ),
    ]
    ops = [migrations.RunPython(_add_events, migrations.RunPython.noop), *_moved()]
    found = judge(ops, before, other_apps={"archive": _archive(options)}, rules=[M405])
    assert [f.rule for f in found] == (["M405"] if flagged else [])
