from __future__ import annotations

from typing import Any

import psycopg
import pytest
from _sql import pg_schema
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

from django_rollout.rules.code.m406_concurrent_operation_in_transaction import (
    ConcurrentOperationInTransaction,
)
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

CODE_RULES = [r for r in all_rules() if r.family() == "code"]
M406 = [ConcurrentOperationInTransaction]
INDEX = models.Index(fields=["placed_at"], name="order_placed_idx")
BEFORE = [
    migrations.CreateModel(
        "Order",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("placed_at", models.DateTimeField()),
        ],
        options={"indexes": [models.Index(fields=["id", "placed_at"], name="order_old_idx")]},
    )
]
NOOP = migrations.RunSQL.noop

CONCURRENT = {
    "add-index-concurrently": AddIndexConcurrently("order", INDEX),
    "remove-index-concurrently": RemoveIndexConcurrently("order", "order_old_idx"),
    "create-index-concurrently": migrations.RunSQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS o_idx ON shop_order (placed_at)", NOOP
    ),
    "create-unique-index-concurrently": migrations.RunSQL(
        ["SET lock_timeout = '1s'", "CREATE UNIQUE INDEX CONCURRENTLY o_u ON shop_order (id)"],
        NOOP,
    ),
    "drop-index-concurrently": migrations.RunSQL("DROP INDEX CONCURRENTLY IF EXISTS o_idx", NOOP),
    "reindex-concurrently": migrations.RunSQL("REINDEX INDEX CONCURRENTLY o_idx", NOOP),
    "detach-partition-concurrently": migrations.RunSQL(
        "ALTER TABLE shop_event DETACH PARTITION shop_event_2020 CONCURRENTLY", NOOP
    ),
}


@pytest.mark.parametrize("operation", CONCURRENT.values(), ids=CONCURRENT.keys())
def test_flags_concurrent_operation_in_atomic_migration(operation: Any) -> None:
    findings = judge([operation], BEFORE, rules=CODE_RULES)
    assert {f.rule for f in findings} == {"M406"}
    assert "cannot run inside a transaction block" in findings[0].message
    assert "atomic = False" in findings[0].help


@pytest.mark.parametrize("operation", CONCURRENT.values(), ids=CONCURRENT.keys())
def test_ignores_concurrent_operation_in_non_atomic_migration(operation: Any) -> None:
    findings = judge([operation], BEFORE, atomic=False, rules=CODE_RULES)
    assert {f.rule for f in findings} == set()


def test_flags_concurrent_sql_inside_database_operations() -> None:
    op = migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL("CREATE INDEX CONCURRENTLY o_idx ON shop_order (placed_at)", NOOP)
        ],
        state_operations=[migrations.AddIndex("order", INDEX)],
    )
    assert {f.rule for f in judge([op], BEFORE, rules=M406)} == {"M406"}


def test_reports_each_concurrent_statement_once() -> None:
    op = migrations.RunSQL(
        "CREATE INDEX CONCURRENTLY a ON shop_order (id); CREATE INDEX b ON shop_order (placed_at);"
        " DROP INDEX CONCURRENTLY c",
        NOOP,
    )
    findings = judge([op], BEFORE, rules=M406)
    assert len(findings) == 2
    assert "CREATE INDEX CONCURRENTLY a" in findings[0].message


@pytest.mark.parametrize(
    "operation",
    [
        migrations.AddIndex("order", INDEX),
        migrations.RunSQL("CREATE INDEX o_idx ON shop_order (placed_at)", NOOP),
        migrations.RunSQL("REINDEX INDEX o_idx", NOOP),
        migrations.RunSQL("SELECT 'CREATE INDEX CONCURRENTLY x ON y (z)'", NOOP),
        migrations.RunSQL("-- CREATE INDEX CONCURRENTLY x ON y (z)\nSELECT 1", NOOP),
        migrations.RunSQL("this is not sql", NOOP),
    ],
    ids=["addindex", "create-index", "reindex", "in-a-literal", "in-a-comment", "unparsable"],
)
def test_ignores_non_concurrent_statements(operation: Any) -> None:
    assert judge([operation], BEFORE, rules=M406) == []


def test_ignores_state_only_concurrent_operation() -> None:
    op = migrations.SeparateDatabaseAndState(
        state_operations=[AddIndexConcurrently("order", INDEX)]
    )
    assert judge([op], BEFORE, rules=M406) == []


def test_ignores_other_vendors() -> None:
    op = migrations.RunSQL("CREATE INDEX CONCURRENTLY o_idx ON shop_order (placed_at)", NOOP)
    assert judge([op], BEFORE, vendor="sqlite", server_version=(3, 45), rules=M406) == []


@pytest.fixture
def pg() -> Any:
    with pg_schema() as conn:
        yield conn


def test_postgresql_refuses_create_index_concurrently_in_a_transaction(pg: Any) -> None:
    pg.execute("CREATE TABLE shop_order (id bigint PRIMARY KEY, placed_at timestamptz)")
    with pytest.raises(psycopg.errors.ActiveSqlTransaction) as error, pg.transaction():
        pg.execute("CREATE INDEX CONCURRENTLY o_idx ON shop_order (placed_at)")
    assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in str(error.value)
    # Outside a transaction (atomic = False) the same statement succeeds.
    pg.execute("CREATE INDEX CONCURRENTLY o_idx ON shop_order (placed_at)")
