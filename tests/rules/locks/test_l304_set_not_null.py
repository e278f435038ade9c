"""L304: SET NOT NULL on a table in S0."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge
from django_rollout.vendors import StatementKind, facts_for

PG = facts_for("postgresql")
LOCKS = [r for r in all_rules() if r.family() == "locks"]
BEFORE = [
    migrations.CreateModel("Customer", [("id", models.BigAutoField(primary_key=True))]),
    migrations.CreateModel(
        "Order",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField(null=True)),
            ("note", models.TextField(null=True)),
            ("qty", models.IntegerField(null=True)),
            ("active", models.BooleanField(null=True)),
            ("token", models.UUIDField(null=True)),
            ("buyer", models.ForeignKey("Customer", models.CASCADE, null=True)),
        ],
    ),
]
NOT_NULL = {
    "placed_at": models.DateTimeField(),
    "note": models.TextField(),
    "qty": models.IntegerField(),
    "active": models.BooleanField(),
    "token": models.UUIDField(),
    "buyer": models.ForeignKey("Customer", models.CASCADE),
}


def l304(operations: list[Any], before: list[Any] = BEFORE, **kw: Any) -> list[Finding]:
    return [f for f in judge(operations, before, rules=LOCKS, **kw) if f.rule == "L304"]


@pytest.mark.parametrize("field", sorted(NOT_NULL))
def test_flags_set_not_null_on_existing_column(field: str, django_settings: None) -> None:
    (finding,) = l304([migrations.AlterField("order", field, NOT_NULL[field])])
    fact = PG.lock(StatementKind.SET_NOT_NULL, 17)
    assert fact.scans
    assert dict(finding.details)["lock"] == fact.table_mode.pg_name
    assert "UPDATE" not in finding.message


def test_mentions_the_backfill_update_when_the_field_has_a_default(django_settings: None) -> None:
    (finding,) = l304([migrations.AlterField("order", "qty", models.IntegerField(default=0))])
    assert 'UPDATE ... WHERE "qty" IS NULL' in finding.message
    assert dict(finding.details)["backfill"] is True


# NOT NULL alterations of a nullable ``note`` (text) column: whether Django backfills the
# NULL rows first is its own call, read from the SQL it emits.
ALTERED: dict[str, Any] = {
    "plain": lambda: models.TextField(),
    # A blank field's effective default '' becomes a temporary column default, which fills
    # no existing row: Django sets it and NOT NULL in one statement, with no UPDATE (silk's
    # 0006_fix_request_prof_file_blank).
    "blank": lambda: models.TextField(blank=True),
    "blank_file": lambda: models.FileField(blank=True, max_length=300),
    "default": lambda: models.TextField(default="x"),
    "callable_default": lambda: models.TextField(default=str),
    "default_none": lambda: models.TextField(default=None),
    "db_default": lambda: models.TextField(db_default="x"),
    "blank_db_default": lambda: models.TextField(blank=True, db_default="x"),
}


@pytest.mark.parametrize("kind", sorted(ALTERED))
def test_the_backfill_update_is_mentioned_exactly_when_django_runs_it(
    kind: str, django_settings: None
) -> None:
    from _sql import django_sql
    from django.db.migrations.state import ProjectState

    alter = migrations.AlterField("order", "note", ALTERED[kind]())
    state = ProjectState()
    django_sql(BEFORE, state)
    runs_update = any(s.lstrip().upper().startswith("UPDATE") for s in django_sql([alter], state))
    (finding,) = l304([migrations.AlterField("order", "note", ALTERED[kind]())])
    assert ("UPDATE ... WHERE" in finding.message) is runs_update
    assert bool(dict(finding.details).get("backfill")) is runs_update


def test_flags_column_added_nullable_earlier_in_the_unit(django_settings: None) -> None:
    # The table has rows: the column was filled by a backfill, and SET NOT NULL still scans.
    added = [migrations.AddField("order", "code", models.CharField(max_length=5, null=True))]
    found = l304(
        [migrations.AlterField("order", "code", models.CharField(max_length=5))],
        unit_before=[added],
    )
    assert [f.rule for f in found] == ["L304"]


def test_flags_runsql_set_not_null(django_settings: None) -> None:
    found = l304([migrations.RunSQL('ALTER TABLE "shop_order" ALTER COLUMN "qty" SET NOT NULL')])
    assert [f.rule for f in found] == ["L304"]


@pytest.mark.parametrize(("rows", "severity"), [(10, Severity.INFO), (2_000_000, Severity.ERROR)])
def test_grades_by_row_count(rows: int, severity: Severity, django_settings: None) -> None:
    (finding,) = l304(
        [migrations.AlterField("order", "qty", NOT_NULL["qty"])], rows={"shop_order": rows}
    )
    assert finding.severity is severity


def test_ignores_column_proven_by_a_check_constraint_in_the_state(django_settings: None) -> None:
    before = [
        *BEFORE,
        migrations.AddConstraint(
            "order", models.CheckConstraint(condition=models.Q(qty__isnull=False), name="qty_nn")
        ),
    ]
    assert l304([migrations.AlterField("order", "qty", NOT_NULL["qty"])], before=before) == []


def test_ignores_runsql_proof_validated_in_the_same_migration(django_settings: None) -> None:
    operations = [
        migrations.RunSQL(
            'ALTER TABLE "shop_order" ADD CONSTRAINT "nn" CHECK ("qty" IS NOT NULL) NOT VALID'
        ),
        migrations.RunSQL('ALTER TABLE "shop_order" VALIDATE CONSTRAINT "nn"'),
        migrations.AlterField("order", "qty", NOT_NULL["qty"]),
    ]
    assert l304(operations) == []


def test_flags_when_the_proof_was_never_validated(django_settings: None) -> None:
    operations = [
        migrations.RunSQL(
            'ALTER TABLE "shop_order" ADD CONSTRAINT "nn" CHECK ("qty" IS NOT NULL) NOT VALID'
        ),
        migrations.AlterField("order", "qty", NOT_NULL["qty"]),
    ]
    assert [f.rule for f in l304(operations)] == ["L304"]


def test_flags_when_the_proof_checks_another_column(django_settings: None) -> None:
    operations = [
        migrations.RunSQL(
            'ALTER TABLE "shop_order" ADD CONSTRAINT "nn" CHECK ("note" IS NOT NULL)'
        ),
        migrations.AlterField("order", "qty", NOT_NULL["qty"]),
    ]
    assert [f.rule for f in l304(operations)] == ["L304"]


ADD_CHECK = migrations.RunSQL(
    'ALTER TABLE "shop_order" ADD CONSTRAINT "nn" CHECK ("qty" IS NOT NULL) NOT VALID'
)
VALIDATE = migrations.RunSQL('ALTER TABLE "shop_order" VALIDATE CONSTRAINT "nn"')
DROP = migrations.RunSQL('ALTER TABLE "shop_order" DROP CONSTRAINT "nn"')


@pytest.mark.parametrize(
    ("earlier", "in_s0", "fires"),
    [
        # Proven by raw SQL in earlier migrations, deployed or walked earlier in the unit,
        # of this app or another one (raw SQL may name any table).
        ([("shop", [ADD_CHECK]), ("shop", [VALIDATE])], True, False),
        ([("shop", [ADD_CHECK]), ("shop", [VALIDATE])], False, False),
        ([("shop", [ADD_CHECK]), ("billing", [VALIDATE])], True, False),
        # Added but never validated, or validated and dropped again: not proven.
        ([("shop", [ADD_CHECK])], True, True),
        ([("shop", [ADD_CHECK]), ("shop", [VALIDATE]), ("shop", [DROP])], True, True),
    ],
)
def test_proof_from_earlier_migrations(
    earlier: list[tuple[str, list[Any]]], in_s0: bool, fires: bool, django_settings: None
) -> None:
    from django_rollout.conf import Config
    from django_rollout.graph.walk import Walker, WalkSettings
    from django_rollout.testing import make_migration

    first = make_migration("shop", "0001_initial", BEFORE)
    proving = [
        make_migration(app, f"{i + 2:04d}_sql", list(ops)) for i, (app, ops) in enumerate(earlier)
    ]
    target = make_migration(
        "shop", "0009_set", [migrations.AlterField("order", "qty", NOT_NULL["qty"])]
    )
    rules = [r() for r in LOCKS]
    walker = Walker(rules, WalkSettings(Config(), "postgresql", (17,), None))
    deployed = [first, *proving] if in_s0 else [first]
    unit = [target] if in_s0 else [*proving, target]
    found = walker.as_one_unit(deployed, unit)
    assert ("L304" in {f.rule for f in found}) is fires


def test_ignores_tables_created_in_the_unit(django_settings: None) -> None:
    created = [
        migrations.CreateModel(
            "Fee",
            [("id", models.AutoField(primary_key=True)), ("n", models.IntegerField(null=True))],
        )
    ]
    assert (
        l304([migrations.AlterField("fee", "n", models.IntegerField())], unit_before=[created])
        == []
    )


def test_ignores_state_only_change(django_settings: None) -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField("order", "qty", NOT_NULL["qty"])]
    )
    assert l304([op]) == []


def test_ignores_column_made_nullable(django_settings: None) -> None:
    before = [
        migrations.CreateModel(
            "Fee", [("id", models.AutoField(primary_key=True)), ("n", models.IntegerField())]
        )
    ]
    assert (
        l304([migrations.AlterField("fee", "n", models.IntegerField(null=True))], before=before)
        == []
    )


def test_ignores_not_null_column_added_with_default(django_settings: None) -> None:
    assert l304([migrations.AddField("order", "n", models.IntegerField(default=0))]) == []


def test_ignores_sqlite(django_settings: None) -> None:
    op = migrations.AlterField("order", "qty", NOT_NULL["qty"])
    assert l304([op], vendor="sqlite", server_version=(3, 45, 1)) == []
