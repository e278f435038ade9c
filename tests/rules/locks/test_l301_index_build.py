"""L301: an index built without CONCURRENTLY on a table in S0."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.rules.locks.l301_index_build_blocks_writes import IndexBuildBlocksWrites
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge
from django_rollout.vendors import LockMode, StatementKind, facts_for

PG = facts_for("postgresql")
LOCKS = [r for r in all_rules() if r.family() == "locks"]


def order(*extra: tuple[str, models.Field[Any, Any]]) -> list[Any]:
    return [
        migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Order",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("status", models.CharField(max_length=20)),
                ("total", models.IntegerField(default=0)),
                *extra,
            ],
        ),
    ]


def l301(operations: list[Any], before: list[Any] | None = None, **kw: Any) -> list[Finding]:
    found = judge(operations, order() if before is None else before, rules=LOCKS, **kw)
    return [f for f in found if f.rule == "L301"]


FIRES = {
    "AddIndex": [migrations.AddIndex("order", models.Index(fields=["status"], name="o_status"))],
    "AddField db_index int": [
        migrations.AddField("order", "n", models.IntegerField(null=True, db_index=True))
    ],
    "AddField db_index datetime": [
        migrations.AddField("order", "at", models.DateTimeField(null=True, db_index=True))
    ],
    "AddField ForeignKey": [
        migrations.AddField(
            "order", "buyer", models.ForeignKey("Customer", models.CASCADE, null=True)
        )
    ],
    "AddField ForeignKey without constraint": [
        migrations.AddField(
            "order",
            "buyer",
            models.ForeignKey("Customer", models.CASCADE, null=True, db_constraint=False),
        )
    ],
    "AddField unique uuid": [
        migrations.AddField("order", "ref", models.UUIDField(null=True, unique=True))
    ],
    "AlterField db_index": [
        migrations.AlterField("order", "status", models.CharField(max_length=20, db_index=True))
    ],
    "AlterField unique": [
        migrations.AlterField("order", "total", models.IntegerField(default=0, unique=True))
    ],
    "UniqueConstraint": [
        migrations.AddConstraint("order", models.UniqueConstraint(fields=["status"], name="u"))
    ],
    "partial UniqueConstraint": [
        migrations.AddConstraint(
            "order",
            models.UniqueConstraint(fields=["status"], name="u", condition=models.Q(total__gt=0)),
        )
    ],
    "AlterUniqueTogether": [migrations.AlterUniqueTogether("order", {("status", "total")})],
    "RunSQL CREATE INDEX": [migrations.RunSQL('CREATE INDEX "o_s" ON "shop_order" ("status")')],
}


@pytest.mark.parametrize("label", sorted(FIRES))
def test_flags_index_build_on_table_in_s0(label: str, django_settings: None) -> None:
    found = l301(FIRES[label])
    assert [f.rule for f in found] == ["L301"]
    assert found[0].severity is Severity.WARNING


def test_flags_plain_index_as_blocking_writes_only(django_settings: None) -> None:
    (finding,) = l301(FIRES["AddIndex"])
    mode = PG.lock(StatementKind.CREATE_INDEX, 17).table_mode
    assert dict(finding.details)["lock"] == mode.pg_name
    assert mode is not None and not mode.blocks_reads
    assert "writes wait" in finding.message and "reads" not in finding.message


@pytest.mark.parametrize(
    "label", ["AddField unique uuid", "UniqueConstraint", "AlterUniqueTogether"]
)
def test_flags_unique_constraint_as_blocking_reads_too(label: str, django_settings: None) -> None:
    (finding,) = l301(FIRES[label])
    mode = PG.lock(StatementKind.ADD_UNIQUE_CONSTRAINT, 17).table_mode
    assert mode is LockMode.ACCESS_EXCLUSIVE or (mode is not None and mode.blocks_reads)
    assert dict(finding.details)["lock"] == mode.pg_name
    assert "reads and writes" in finding.message


def test_flags_partial_unique_index_under_share_lock(django_settings: None) -> None:
    (finding,) = l301(FIRES["partial UniqueConstraint"])
    assert (
        dict(finding.details)["lock"] == PG.lock(StatementKind.CREATE_INDEX, 17).table_mode.pg_name
    )


def test_counts_the_like_index_of_a_char_field(django_settings: None) -> None:
    (finding,) = l301(
        [
            migrations.AddField(
                "order", "code", models.CharField(max_length=8, null=True, db_index=True)
            )
        ]
    )
    assert dict(finding.details)["indexes"] == 2


@pytest.mark.parametrize(
    ("rows", "severity"),
    [(500, Severity.INFO), (50_000, Severity.WARNING), (5_000_000, Severity.ERROR)],
)
def test_grades_by_row_count(rows: int, severity: Severity, django_settings: None) -> None:
    (finding,) = l301(FIRES["AddIndex"], rows={"shop_order": rows})
    assert finding.severity is severity
    assert dict(finding.details)["rows"] == rows
    assert f"{rows:,} rows" in finding.message


SILENT = {
    "AddIndexConcurrently": (
        [AddIndexConcurrently("order", models.Index(fields=["status"], name="o_status"))],
        {"atomic": False},
    ),
    "RunSQL CONCURRENTLY": (
        [migrations.RunSQL('CREATE INDEX CONCURRENTLY "o_s" ON "shop_order" ("status")')],
        {"atomic": False},
    ),
    "FK with db_index=False": (
        [
            migrations.AddField(
                "order",
                "buyer",
                models.ForeignKey("Customer", models.CASCADE, null=True, db_index=False),
            )
        ],
        {},
    ),
    "plain column": ([migrations.AddField("order", "note", models.TextField(null=True))], {}),
    "CheckConstraint": (
        [
            migrations.AddConstraint(
                "order", models.CheckConstraint(condition=models.Q(total__gte=0), name="c")
            )
        ],
        {},
    ),
    "sqlite has no concurrent build": (
        FIRES["AddIndex"],
        {"vendor": "sqlite", "server_version": (3, 45, 1)},
    ),
}


@pytest.mark.parametrize("label", sorted(SILENT))
def test_ignores_builds_that_do_not_block(label: str, django_settings: None) -> None:
    operations, kw = SILENT[label]
    assert l301(operations, **kw) == []


def test_ignores_table_created_in_the_unit(django_settings: None) -> None:
    created = [
        migrations.CreateModel(
            "Draft",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("status", models.CharField(max_length=9)),
            ],
        )
    ]
    operations = [
        migrations.AddIndex("draft", models.Index(fields=["status"], name="d_status")),
        migrations.AddField(
            "draft", "buyer", models.ForeignKey("Customer", models.CASCADE, null=True)
        ),
    ]
    assert l301(operations, unit_before=[created]) == []
    assert l301([*created, *operations]) == []


def test_ignores_state_only_index(django_settings: None) -> None:
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex("order", models.Index(fields=["status"], name="o_s"))
            ],
            database_operations=[
                migrations.RunSQL('CREATE INDEX CONCURRENTLY "o_s" ON "shop_order" ("status")')
            ],
        )
    ]
    assert l301(operations, atomic=False) == []


def test_flags_table_renamed_earlier_in_the_unit(django_settings: None) -> None:
    renamed = [migrations.RenameModel("Order", "Purchase")]
    found = l301(
        [migrations.AddIndex("purchase", models.Index(fields=["status"], name="p_s"))],
        unit_before=[renamed],
        rows={"shop_order": 2_000_000},
    )
    assert [f.severity for f in found] == [Severity.ERROR]


def test_rule_class_is_registered() -> None:
    assert IndexBuildBlocksWrites in LOCKS
