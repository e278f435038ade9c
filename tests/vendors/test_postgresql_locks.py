"""Assert every PostgreSQL fact against a live server.

For each statement kind a representative statement runs on scratch tables; the locks
are read from ``pg_locks`` for the statement's own backend before it commits, the
rewrite from ``pg_class.relfilenode`` and the scan from ``pg_stat_xact_user_tables``.
Statements that cannot run in a transaction (CONCURRENTLY) are held on a blocker
transaction and their locks read from a probe session while they wait.

The server is ``DJANGO_ROLLOUT_PG_DSN`` (default: the local test server); more servers,
e.g. another major version, can be added with ``DJANGO_ROLLOUT_EXTRA_PG_DSNS``
(comma-separated).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql

from django_rollout.vendors import LockFact, LockMode, StatementKind, facts_for
from django_rollout.vendors.base import UnsupportedStatementError
from django_rollout.vendors.postgresql import major_version

K = StatementKind
PG = facts_for("postgresql")
MAIN_DSN = os.environ.get(
    "DJANGO_ROLLOUT_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
DSNS = [MAIN_DSN] + [
    dsn.strip()
    for dsn in os.environ.get("DJANGO_ROLLOUT_EXTRA_PG_DSNS", "").split(",")
    if dsn.strip()
]

# Tables every case starts from. {t} is the statement's table, {r} the table its foreign
# key references, {p} a partition. Rows are there so that scans and rewrites do real work.
REF = "CREATE TABLE {r} (id int PRIMARY KEY); INSERT INTO {r} VALUES (1), (2)"
TABLE = (
    "CREATE TABLE {t} (id int PRIMARY KEY, a int, b varchar(50), r_id int);"
    " INSERT INTO {t} SELECT g, g, 'x', 1 FROM generate_series(1, 50) g"
)
TABLE_FK = TABLE + "; ALTER TABLE {t} ADD CONSTRAINT {t}_fk FOREIGN KEY (r_id) REFERENCES {r}(id)"
PARENT = (
    "CREATE TABLE {t} (id int NOT NULL, a int) PARTITION BY RANGE (id);"
    " CREATE TABLE {p} (id int NOT NULL, a int);"
    " INSERT INTO {p} SELECT g, g FROM generate_series(1, 50) g"
)
ATTACHED = PARENT + "; ALTER TABLE {t} ATTACH PARTITION {p} FOR VALUES FROM (0) TO (1000)"


@dataclass(frozen=True)
class Case:
    """A representative statement for one kind, and the tables it starts from."""

    kind: StatementKind
    setup: str
    statement: str
    in_transaction: bool = True
    observe_scan: bool = True
    scan_on: str = "t"
    # Run after the statement first waits, then release the first blocker: holds a
    # statement that works in two transactions (DETACH ... CONCURRENTLY) in its second.
    second_blocker: str | None = None


CASES: dict[StatementKind, Case] = {
    c.kind: c
    for c in (
        Case(K.CREATE_TABLE, REF, "CREATE TABLE {t} (id int PRIMARY KEY, r_id int REFERENCES {r})"),
        Case(K.DROP_TABLE, REF + ";" + TABLE_FK, "DROP TABLE {t}"),
        Case(K.RENAME_TABLE, REF + ";" + TABLE_FK, "ALTER TABLE {t} RENAME TO {t}_renamed"),
        Case(K.ADD_COLUMN, REF + ";" + TABLE_FK, "ALTER TABLE {t} ADD COLUMN c int DEFAULT 5"),
        Case(
            K.ADD_COLUMN_VOLATILE_DEFAULT,
            REF + ";" + TABLE_FK,
            "ALTER TABLE {t} ADD COLUMN c float8 DEFAULT random()",
        ),
        Case(K.DROP_COLUMN, REF + ";" + TABLE_FK, "ALTER TABLE {t} DROP COLUMN r_id"),
        Case(K.RENAME_COLUMN, REF + ";" + TABLE_FK, "ALTER TABLE {t} RENAME COLUMN a TO a2"),
        Case(
            K.ALTER_COLUMN_TYPE, REF + ";" + TABLE_FK, "ALTER TABLE {t} ALTER COLUMN a TYPE bigint"
        ),
        Case(K.SET_NOT_NULL, REF + ";" + TABLE_FK, "ALTER TABLE {t} ALTER COLUMN a SET NOT NULL"),
        Case(
            K.DROP_NOT_NULL,
            REF + ";" + TABLE_FK + "; ALTER TABLE {t} ALTER COLUMN a SET NOT NULL",
            "ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL",
        ),
        Case(K.SET_DEFAULT, REF + ";" + TABLE_FK, "ALTER TABLE {t} ALTER COLUMN a SET DEFAULT 0"),
        Case(
            K.DROP_DEFAULT,
            REF + ";" + TABLE_FK + "; ALTER TABLE {t} ALTER COLUMN a SET DEFAULT 0",
            "ALTER TABLE {t} ALTER COLUMN a DROP DEFAULT",
        ),
        Case(
            K.ADD_UNIQUE_CONSTRAINT,
            REF + ";" + TABLE_FK,
            "ALTER TABLE {t} ADD CONSTRAINT {t}_a_uniq UNIQUE (a)",
        ),
        Case(
            K.ADD_UNIQUE_USING_INDEX,
            REF + ";" + TABLE_FK + "; CREATE UNIQUE INDEX {t}_a_idx ON {t} (a)",
            "ALTER TABLE {t} ADD CONSTRAINT {t}_a_uniq UNIQUE USING INDEX {t}_a_idx",
        ),
        Case(
            K.ADD_PRIMARY_KEY,
            "CREATE TABLE {t} (id int, a int);"
            " INSERT INTO {t} SELECT g, g FROM generate_series(1, 50) g",
            "ALTER TABLE {t} ADD PRIMARY KEY (id)",
        ),
        Case(
            K.ADD_CHECK, REF + ";" + TABLE_FK, "ALTER TABLE {t} ADD CONSTRAINT {t}_c CHECK (a > 0)"
        ),
        Case(
            K.ADD_CHECK_NOT_VALID,
            REF + ";" + TABLE_FK,
            "ALTER TABLE {t} ADD CONSTRAINT {t}_c CHECK (a > 0) NOT VALID",
        ),
        Case(
            K.ADD_FOREIGN_KEY,
            REF + ";" + TABLE,
            # Django's spelling: deferred constraints still validate existing rows at once.
            "ALTER TABLE {t} ADD CONSTRAINT {t}_fk FOREIGN KEY (r_id) REFERENCES {r} (id)"
            " DEFERRABLE INITIALLY DEFERRED",
        ),
        Case(
            K.ADD_FOREIGN_KEY_NOT_VALID,
            REF + ";" + TABLE,
            "ALTER TABLE {t} ADD CONSTRAINT {t}_fk FOREIGN KEY (r_id) REFERENCES {r} (id)"
            " NOT VALID",
        ),
        Case(
            K.VALIDATE_CONSTRAINT,
            REF
            + ";"
            + TABLE
            + "; ALTER TABLE {t} ADD CONSTRAINT {t}_fk FOREIGN KEY (r_id) REFERENCES {r} NOT VALID",
            "ALTER TABLE {t} VALIDATE CONSTRAINT {t}_fk",
        ),
        Case(K.DROP_CONSTRAINT, REF + ";" + TABLE_FK, "ALTER TABLE {t} DROP CONSTRAINT {t}_fk"),
        Case(
            K.RENAME_CONSTRAINT,
            REF + ";" + TABLE_FK,
            "ALTER TABLE {t} RENAME CONSTRAINT {t}_fk TO {t}_fk2",
        ),
        Case(K.CREATE_INDEX, REF + ";" + TABLE_FK, "CREATE INDEX {t}_a_idx ON {t} (a)"),
        Case(
            K.CREATE_INDEX_CONCURRENTLY,
            REF + ";" + TABLE_FK,
            "CREATE INDEX CONCURRENTLY {t}_a_idx ON {t} (a)",
            in_transaction=False,
        ),
        Case(
            K.DROP_INDEX,
            REF + ";" + TABLE_FK + "; CREATE INDEX {t}_a_idx ON {t} (a)",
            "DROP INDEX {t}_a_idx",
        ),
        Case(
            K.DROP_INDEX_CONCURRENTLY,
            REF + ";" + TABLE_FK + "; CREATE INDEX {t}_a_idx ON {t} (a)",
            "DROP INDEX CONCURRENTLY {t}_a_idx",
            in_transaction=False,
        ),
        Case(
            K.RENAME_INDEX,
            REF + ";" + TABLE_FK + "; CREATE INDEX {t}_a_idx ON {t} (a)",
            "ALTER INDEX {t}_a_idx RENAME TO {t}_a_idx2",
        ),
        Case(
            K.REINDEX,
            REF + ";" + TABLE_FK + "; CREATE INDEX {t}_a_idx ON {t} (a)",
            "REINDEX INDEX {t}_a_idx",
        ),
        Case(
            K.REINDEX_CONCURRENTLY,
            REF + ";" + TABLE_FK + "; CREATE INDEX {t}_a_idx ON {t} (a)",
            "REINDEX INDEX CONCURRENTLY {t}_a_idx",
            in_transaction=False,
        ),
        Case(
            K.ATTACH_PARTITION,
            PARENT,
            "ALTER TABLE {t} ATTACH PARTITION {p} FOR VALUES FROM (0) TO (1000)",
            scan_on="p",
        ),
        Case(K.DETACH_PARTITION, ATTACHED, "ALTER TABLE {t} DETACH PARTITION {p}"),
        Case(
            K.DETACH_PARTITION_CONCURRENTLY,
            ATTACHED,
            "ALTER TABLE {t} DETACH PARTITION {p} CONCURRENTLY",
            in_transaction=False,
            # It holds no lock while it waits between its two transactions; a reader of
            # the partition holds up the second one, whose locks are the strongest.
            second_blocker="SELECT count(*) FROM {p}",
        ),
        # Rebuilding the (empty) primary key index counts as a scan of the new empty file.
        Case(K.TRUNCATE, REF + ";" + TABLE_FK, "TRUNCATE {t}", observe_scan=False),
        # DML scans depend on the plan, not on the statement kind: not observed.
        Case(K.UPDATE, REF + ";" + TABLE_FK, "UPDATE {t} SET r_id = 2", observe_scan=False),
        Case(
            K.INSERT,
            REF + ";" + TABLE_FK,
            "INSERT INTO {t} (id, a, r_id) VALUES (1000, 1, 2)",
            observe_scan=False,
        ),
        Case(K.DELETE, REF + ";" + TABLE_FK, "DELETE FROM {t} WHERE a > 25", observe_scan=False),
        Case(K.SET_LOCK_TIMEOUT, REF + ";" + TABLE_FK, "SET LOCAL lock_timeout = '2s'"),
        Case(K.SET_STATEMENT_TIMEOUT, REF + ";" + TABLE_FK, "SET LOCAL statement_timeout = '2s'"),
    )
}


def q(text: str) -> LiteralString:
    """Mark SQL assembled from this module's own constants as safe for psycopg."""
    return text  # mypy treats LiteralString as str; psycopg's stubs want the marker


@dataclass(frozen=True)
class Observed:
    """What one statement did, as the server reports it."""

    modes: dict[str, LockMode | None]
    rewrote: dict[str, bool]
    scanned: dict[str, bool]


@dataclass
class Scratch:
    """A scratch schema on one server."""

    dsn: str
    schema: str
    server_version: int

    def connect(self, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self.dsn, autocommit=autocommit)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        conn.execute("SET lock_timeout = '10s'")
        conn.execute("SET TimeZone = 'UTC'")  # as Django sets it with USE_TZ = True
        if not autocommit:
            conn.commit()
        return conn


@pytest.fixture(scope="module", params=DSNS, ids=lambda dsn: dsn.split("port=")[-1].split()[0])
def scratch(request: pytest.FixtureRequest) -> Iterator[Scratch]:
    dsn: str = request.param
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server at {dsn!r}: {error}")
    schema = f"rollout_locks_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield Scratch(dsn, schema, admin.info.server_version)
    finally:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        admin.close()


def _names(kind: StatementKind) -> dict[str, str]:
    prefix = kind.value[:40]
    return {"t": f"{prefix}_t", "r": f"{prefix}_r", "p": f"{prefix}_p"}


def _value(cur: psycopg.Cursor[tuple[object, ...]], query: LiteralString, param: object) -> Any:
    row = cur.execute(query, (param,)).fetchone()
    return row[0] if row else None


def _oids(cur: psycopg.Cursor[tuple[object, ...]], names: dict[str, str]) -> dict[str, int | None]:
    return {role: _value(cur, "SELECT to_regclass(%s)::oid", name) for role, name in names.items()}


def _relfilenodes(
    cur: psycopg.Cursor[tuple[object, ...]], oids: dict[str, int | None]
) -> dict[str, object]:
    return {
        role: cur.execute("SELECT relfilenode FROM pg_class WHERE oid = %s", (oid,)).fetchone()
        for role, oid in oids.items()
    }


def _seq_scans(
    cur: psycopg.Cursor[tuple[object, ...]], oids: dict[str, int | None]
) -> dict[str, int]:
    # pg_stat_get_xact_numscans counts the scans of the current transaction, not yet flushed.
    return {
        role: int(_value(cur, "SELECT pg_stat_get_xact_numscans(%s)", oid) or 0) if oid else 0
        for role, oid in oids.items()
    }


def _modes(
    cur: psycopg.Cursor[tuple[object, ...]],
    pid: int,
    oids: dict[str, int | None],
    *,
    with_waiting: bool = False,
) -> dict[str, LockMode | None]:
    """Return the strongest lock *pid* holds (or, *with_waiting*, asks for) per table."""
    rows = cur.execute(
        "SELECT relation::oid, mode FROM pg_locks"
        " WHERE pid = %s AND locktype = 'relation' AND (granted OR %s)",
        (pid, with_waiting),
    ).fetchall()
    modes: dict[str, LockMode | None] = {}
    for role, oid in oids.items():
        held = [LockMode.from_pg_name(str(mode)) for rel, mode in rows if rel == oid]
        modes[role] = max(held) if held else None
    return modes


def observe(scratch: Scratch, case: Case) -> Observed:
    """Run *case* and report its locks, rewrites and scans."""
    names = _names(case.kind)
    with scratch.connect() as setup:
        for statement in case.setup.split(";"):
            if statement.strip():
                setup.execute(q(statement.format(**names)))
    statement = case.statement.format(**names)
    if case.in_transaction:
        return _observe_in_transaction(scratch, names, statement)
    second = case.second_blocker.format(**names) if case.second_blocker else None
    return _observe_while_waiting(scratch, names, statement, second)


def _observe_in_transaction(scratch: Scratch, names: dict[str, str], statement: str) -> Observed:
    with scratch.connect(autocommit=False) as conn, conn.cursor() as cur:
        before = _oids(cur, names)
        files = _relfilenodes(cur, before)
        scans = _seq_scans(cur, before)
        cur.execute(q(statement))
        after = {role: before[role] or oid for role, oid in _oids(cur, names).items()}
        pid = conn.info.backend_pid
        modes = _modes(cur, pid, after)
        files_after = _relfilenodes(cur, before)
        scans_after = _seq_scans(cur, before)
        conn.rollback()
    return Observed(
        modes,
        {
            role: files[role] is not None and files_after[role] not in (None, files[role])
            for role in names
        },
        {role: scans_after[role] > scans[role] for role in names},
    )


def _wait_until(probe: psycopg.Connection[tuple[object, ...]], query: str, pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if probe.execute(q(query), (pid,)).fetchone():
            return
        time.sleep(0.02)
    pytest.fail(f"backend {pid} never waited: {query}")


def _observe_while_waiting(
    scratch: Scratch, names: dict[str, str], statement: str, second: str | None
) -> Observed:
    """Hold *statement* behind an open writer and read its locks from a probe session."""
    with (
        scratch.connect() as probe,
        scratch.connect(autocommit=False) as blocker,
        scratch.connect(autocommit=False) as blocker2,
    ):
        oids = _oids(probe.cursor(), names)
        files = _relfilenodes(probe.cursor(), oids)
        blocker.execute(sql.SQL("UPDATE {} SET a = a").format(sql.Identifier(names["t"])))
        worker = scratch.connect()
        pid = worker.info.backend_pid
        errors: list[BaseException] = []

        def run() -> None:
            try:
                worker.execute(q(statement))
            except BaseException as error:  # reported by the test thread
                errors.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            _wait_until(
                probe,
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                pid,
            )
            if second is not None:
                blocker2.execute(q(second))
                blocker.commit()
                _wait_until(
                    probe,
                    "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'relation'"
                    " AND NOT granted",
                    pid,
                )
            modes = _modes(probe.cursor(), pid, oids, with_waiting=True)
        finally:
            blocker.commit()
            blocker2.commit()
            thread.join(timeout=30)
            worker.close()
        assert not errors, errors
        files_after = _relfilenodes(probe.cursor(), oids)
    return Observed(
        modes,
        {
            role: files[role] is not None and files_after[role] not in (None, files[role])
            for role in names
        },
        {},  # another backend's scan counters are not visible until it flushes them
    )


def _expected(kind: StatementKind, server_version: int) -> LockFact:
    return PG.lock(kind, server_version)


@pytest.mark.parametrize("kind", list(CASES), ids=lambda k: k.value)
def test_postgresql_fact_matches_server(scratch: Scratch, kind: StatementKind) -> None:
    try:
        fact = _expected(kind, scratch.server_version)
    except UnsupportedStatementError:
        pytest.skip(f"{kind.name} is not available on server {scratch.server_version}")
    case = CASES[kind]
    seen = observe(scratch, case)
    assert seen.modes["t"] == fact.table_mode, f"table lock of {case.statement}"
    assert seen.modes["r"] == fact.referenced_mode, f"referenced-table lock of {case.statement}"
    assert seen.modes["p"] == fact.partition_mode, f"partition lock of {case.statement}"
    assert seen.rewrote["t"] == fact.rewrites, f"rewrite by {case.statement}"
    if case.in_transaction and case.observe_scan:
        assert seen.scanned[case.scan_on] == fact.scans, f"scan by {case.statement}"


def test_every_postgresql_fact_has_a_live_case() -> None:
    for major in range(12, 19):
        for kind in StatementKind:
            if kind is K.OTHER:
                continue
            try:
                PG.lock(kind, major)
            except UnsupportedStatementError:
                continue
            # ADD_NOT_NULL_NOT_VALID exists only on 18, which no test server here runs.
            if kind is K.ADD_NOT_NULL_NOT_VALID:
                continue
            assert kind in CASES, f"{kind.name} has a PostgreSQL {major} fact but no live case"


def test_detach_partition_concurrently_is_refused_before_14() -> None:
    with pytest.raises(UnsupportedStatementError, match="14"):
        PG.lock(K.DETACH_PARTITION_CONCURRENTLY, 13)
    assert (
        PG.lock(K.DETACH_PARTITION_CONCURRENTLY, 140010).table_mode
        is LockMode.SHARE_UPDATE_EXCLUSIVE
    )


def test_major_version_accepts_server_version_num() -> None:
    assert major_version(150020) == 15
    assert major_version(16) == 16
    with pytest.raises(UnsupportedStatementError):
        major_version(110000)


# (old type, new type): pairs Django's AlterField produces; each checked on the server.
TYPE_CHANGES = [
    ("varchar(50)", "varchar(100)"),
    ("varchar(100)", "varchar(50)"),
    ("varchar(100)", "text"),
    ("varchar(100)", "varchar"),
    ("text", "varchar(100)"),
    ("integer", "bigint"),
    ("bigint", "integer"),
    ("smallint", "integer"),
    ("numeric(10, 2)", "numeric(12, 2)"),
    ("numeric(10, 2)", "numeric(10, 3)"),
    ("numeric(10, 2)", "numeric(8, 2)"),
    ("numeric(10, 2)", "numeric"),
    ("timestamp", "timestamp with time zone"),
    ("timestamp with time zone", "timestamp"),
    ("date", "timestamp with time zone"),
    ("text", "integer"),
    ("integer", "text"),
    ("varchar(10)", "char(10)"),
]


@pytest.mark.parametrize(("old", "new"), TYPE_CHANGES, ids=lambda t: t)
def test_type_change_rewrite_matches_server(scratch: Scratch, old: str, new: str) -> None:
    table = f"types_{uuid.uuid4().hex[:8]}"
    with scratch.connect() as conn:
        conn.execute(q(f"CREATE TABLE {table} (v {old})"))
        value = "2024-01-01" if ("time" in old or "date" in old) else "1"
        conn.execute(q(f"INSERT INTO {table} VALUES ('{value}')"))
        relfilenode = q(f"SELECT relfilenode FROM pg_class WHERE oid = '{table}'::regclass")
        before = conn.execute(relfilenode).fetchone()
        using = f" USING v::{new}" if (old, new) == ("text", "integer") else ""
        conn.execute(q(f"ALTER TABLE {table} ALTER COLUMN v TYPE {new}{using}"))
        after = conn.execute(relfilenode).fetchone()
        conn.execute(q(f"DROP TABLE {table}"))
    assert PG.type_change_rewrites(old, new, scratch.server_version) == (before != after)
