"""The probe's two directions of waiting, on real PostgreSQL sessions: traffic blocked by the
migrating statement (``traffic_wait_ms``) and the migrating statement blocked by traffic
(``lock_wait_ms``: the migration queued behind the application's transaction)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connections, transaction

from django_rollout.db.locks import Probe, Statement, Tracer
from django_rollout.db.traffic import backend_pid
from tests._project import PG, extra_aliases

ALIAS = "rollout_probe_pg"
HOLD_S = 0.4


@pytest.fixture
def table() -> Iterator[str]:
    name = f"probe_wait_{uuid.uuid4().hex[:8]}"
    with extra_aliases(ALIAS, "rollout_probe_lite"):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY)")
            cursor.execute(f"INSERT INTO {name} VALUES (1)")
        try:
            yield name
        finally:
            with connections[ALIAS].cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")


def _migrate_behind(table: str, holder_is_traffic: bool) -> Statement:
    """Run ``ALTER TABLE`` while another session's open transaction has read the table,
    until it commits HOLD_S later; return the traced statement."""
    connection = connections[ALIAS]
    connection.ensure_connection()
    with (
        psycopg.connect(dbname="test", **PG) as holder,  # type: ignore[arg-type]
        psycopg.connect(dbname="test", **PG) as bystander,  # type: ignore[arg-type]
    ):
        holder.execute(f"SELECT * FROM {table}")  # ACCESS SHARE until it commits
        traffic = holder if holder_is_traffic else bystander
        release = threading.Timer(HOLD_S, holder.commit)
        tracer = Tracer(connection, origin=time.perf_counter())
        migrating = backend_pid(connection)
        assert migrating is not None
        probe = Probe(ALIAS, migrating, tracer)
        probe.traffic_pids = [traffic.info.backend_pid]
        with connection.execute_wrapper(tracer), probe:
            release.start()
            with transaction.atomic(using=ALIAS), connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} ADD COLUMN extra integer")
        release.join()
    [statement] = [s for s in tracer.statements if s.sql.startswith("ALTER TABLE")]
    return statement


def test_the_migration_waiting_behind_a_traffic_transaction_is_measured(table: str) -> None:
    statement = _migrate_behind(table, holder_is_traffic=True)
    assert statement.duration_ms >= HOLD_S * 1000 * 0.9
    assert statement.lock_wait_ms is not None
    # Most of the statement was the wait, and never more than the statement.
    assert HOLD_S * 1000 * 0.6 <= statement.lock_wait_ms <= statement.duration_ms + 10
    # The other direction: nothing of the traffic waited behind the migration.
    assert statement.traffic_wait_ms == 0
    assert statement.to_dict()["lock_wait_ms"] == round(statement.lock_wait_ms, 3)


def test_a_wait_behind_a_session_that_is_not_traffic_is_not_counted(table: str) -> None:
    statement = _migrate_behind(table, holder_is_traffic=False)
    assert statement.duration_ms >= HOLD_S * 1000 * 0.9
    assert statement.lock_wait_ms == 0


def test_no_traffic_no_measure() -> None:
    class _Connection:
        vendor = "postgresql"
        in_atomic_block = True

    tracer = Tracer(_Connection(), origin=0.0, trace_locks=False)
    tracer(lambda *args: None, "SELECT 1", None, False, None)
    [statement] = tracer.statements
    assert statement.traffic_wait_ms == 0 and statement.lock_wait_ms is None
    assert statement.to_dict()["lock_wait_ms"] is None
