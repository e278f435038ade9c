"""Shared by the compat rule tests: the family's rules, field kinds, a deployed model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from django_rollout.rules.compat.c101_not_null_column_without_db_default import (
    NotNullColumnWithoutDbDefault,
)
from django_rollout.rules.compat.c102_column_dropped_while_in_use import ColumnDroppedWhileInUse
from django_rollout.rules.compat.c103_column_renamed_while_in_use import ColumnRenamedWhileInUse
from django_rollout.rules.compat.c104_table_renamed_while_in_use import TableRenamedWhileInUse
from django_rollout.rules.compat.c105_table_dropped_while_in_use import TableDroppedWhileInUse
from django_rollout.rules.compat.c106_column_type_incompatible import ColumnTypeIncompatible
from django_rollout.rules.compat.c107_not_null_on_column_old_release_nulls import (
    NotNullOnColumnOldReleaseNulls,
)
from django_rollout.rules.compat.c108_constraint_old_writes_may_violate import (
    ConstraintOldWritesMayViolate,
)
from django_rollout.rules.compat.c109_reference_unknown_to_old_cascade import (
    ReferenceUnknownToOldCascade,
)
from django_rollout.testing import judge

COMPAT = [
    NotNullColumnWithoutDbDefault,
    ColumnDroppedWhileInUse,
    ColumnRenamedWhileInUse,
    TableRenamedWhileInUse,
    TableDroppedWhileInUse,
    ColumnTypeIncompatible,
    NotNullOnColumnOldReleaseNulls,
    ConstraintOldWritesMayViolate,
    ReferenceUnknownToOldCascade,
]

FIELDS: dict[str, Callable[[], models.Field[Any, Any]]] = {
    "char": lambda: models.CharField(max_length=100),
    "integer": lambda: models.IntegerField(),
    "boolean": lambda: models.BooleanField(default=False),
    "datetime": lambda: models.DateTimeField(null=True),
    "foreign_key": lambda: models.ForeignKey("shop.category", models.CASCADE),
    "uuid": lambda: models.UUIDField(),
    "json": lambda: models.JSONField(default=dict),
    "db_default": lambda: models.IntegerField(db_default=0),
}


def deployed(kind: str) -> list[Operation]:
    return [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [("id", models.BigAutoField(primary_key=True)), ("extra", FIELDS[kind]())],
        ),
    ]


def fired(operations: Sequence[Operation], before: Sequence[Operation], **kw: Any) -> set[str]:
    return {f.rule for f in judge(operations, before, rules=COMPAT, **kw) if f.rule}
