"""The vendor-neutral vocabulary, type-change facts, and SQLite facts checked on sqlite3."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_rollout.vendors import LockMode, StatementKind, facts_for
from django_rollout.vendors.base import UnsupportedStatementError, parse_db_type
from django_rollout.vendors.sqlite import SQLiteFacts

K = StatementKind
M = LockMode
PG = facts_for("postgresql")
LITE = facts_for("sqlite")


def test_lock_mode_names_match_pg_locks() -> None:
    assert M.ACCESS_EXCLUSIVE.pg_name == "AccessExclusiveLock"
    assert M.SHARE_UPDATE_EXCLUSIVE.pg_name == "ShareUpdateExclusiveLock"
    assert M.ROW_SHARE.sql_name == "ROW SHARE"
    assert all(M.from_pg_name(mode.pg_name) is mode for mode in M)
    with pytest.raises(ValueError):
        M.from_pg_name("AdvisoryLock")


def test_lock_mode_conflicts_are_symmetric() -> None:
    for a in M:
        for b in M:
            assert a.conflicts_with(b) == b.conflicts_with(a), (a, b)


@pytest.mark.parametrize(
    ("mode", "blocks_reads", "blocks_writes"),
    [
        (M.ACCESS_SHARE, False, False),
        (M.ROW_SHARE, False, False),
        (M.ROW_EXCLUSIVE, False, False),
        (M.SHARE_UPDATE_EXCLUSIVE, False, False),
        (M.SHARE, False, True),
        (M.SHARE_ROW_EXCLUSIVE, False, True),
        (M.EXCLUSIVE, False, True),
        (M.ACCESS_EXCLUSIVE, True, True),
    ],
)
def test_lock_mode_says_whom_it_blocks(
    mode: LockMode, blocks_reads: bool, blocks_writes: bool
) -> None:
    assert (mode.blocks_reads, mode.blocks_writes) == (blocks_reads, blocks_writes)


def test_facts_for_refuses_unknown_vendor() -> None:
    assert facts_for("postgresql").vendor == "postgresql"
    assert facts_for("sqlite").vendor == "sqlite"
    with pytest.raises(ValueError, match="mysql"):
        facts_for("mysql")


def test_postgresql_has_a_fact_for_every_kind_from_18() -> None:
    for kind in StatementKind:
        assert PG.lock(kind, 18).kind is kind


def test_not_null_not_valid_needs_postgresql_18() -> None:
    with pytest.raises(UnsupportedStatementError, match="18"):
        PG.lock(K.ADD_NOT_NULL_NOT_VALID, 17)
    fact = PG.lock(K.ADD_NOT_NULL_NOT_VALID, 180000)
    assert (fact.table_mode, fact.scans) == (M.ACCESS_EXCLUSIVE, False)


def test_other_is_unknown_not_safe() -> None:
    fact = PG.lock(K.OTHER, 15)
    assert fact.table_mode is None
    assert "unknown" in fact.note


def test_rewrite_implies_scan_except_truncate() -> None:
    assert not PG.lock(K.TRUNCATE, 15).scans
    for kind in set(StatementKind) - {K.TRUNCATE}:
        for major in range(12, 19):
            try:
                fact = PG.lock(kind, major)
            except UnsupportedStatementError:
                continue
            assert fact.scans or not fact.rewrites, kind


def test_parse_db_type_canonicalises_spellings() -> None:
    assert parse_db_type("character varying(50)") == parse_db_type("varchar(50)")
    assert parse_db_type("NUMERIC(10, 2)") == parse_db_type("decimal(10,2)")
    assert parse_db_type("timestamp with time zone") == parse_db_type("timestamptz")
    assert parse_db_type("timestamp(3) with time zone").precision == 3
    assert parse_db_type("int4") == parse_db_type("integer")


@pytest.mark.parametrize(
    ("old", "new", "rewrites"),
    [
        ("varchar(50)", "varchar(100)", False),
        ("varchar(100)", "varchar(50)", True),
        ("varchar(100)", "text", False),
        ("text", "varchar(100)", True),
        ("integer", "bigint", True),
        ("numeric(10, 2)", "numeric(12, 2)", False),
        ("numeric(10, 2)", "numeric(12, 3)", True),
        ("timestamp", "timestamp with time zone", False),
        ("varchar(50)", "varchar(50)", False),
        ("uuid", "varchar(36)", True),
    ],
)
def test_postgresql_type_change_rewrites(old: str, new: str, rewrites: bool) -> None:
    assert PG.type_change_rewrites(old, new, 15) is rewrites


@pytest.mark.parametrize(
    ("old", "new", "narrows"),
    [
        ("varchar(100)", "varchar(50)", True),
        ("varchar(50)", "varchar(100)", False),
        ("text", "varchar(100)", True),
        ("varchar(100)", "text", False),
        ("numeric(10, 2)", "numeric(8, 2)", True),
        ("numeric(10, 2)", "numeric(10, 1)", True),
        ("numeric(10, 2)", "numeric(12, 2)", False),
        ("numeric", "numeric(10, 2)", True),
        ("text", "integer", True),
        ("bigint", "integer", True),
        ("integer", "bigint", False),
        ("integer", "numeric(12, 2)", False),
        ("integer", "numeric(5, 0)", True),
        ("integer", "text", False),
        ("date", "timestamp with time zone", False),
        ("timestamp with time zone", "date", True),
        ("double precision", "real", True),
        ("jsonb", "integer", True),
    ],
)
def test_type_change_narrows(old: str, new: str, narrows: bool) -> None:
    assert PG.type_change_narrows(old, new) is narrows


def test_sqlite_ignores_lengths_when_narrowing() -> None:
    assert LITE.type_change_narrows("varchar(100)", "varchar(10)") is False
    assert LITE.type_change_narrows("text", "integer") is True
    assert LITE.type_change_rewrites("varchar(10)", "varchar(100)", 34500) is True


# --- SQLite, on a real database ------------------------------------------------------

SQLITE_VERSION = sqlite3.sqlite_version_info
PACKED = SQLITE_VERSION[0] * 10000 + SQLITE_VERSION[1] * 100 + SQLITE_VERSION[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "facts.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        """
        CREATE TABLE t (id integer PRIMARY KEY, a integer, b varchar(50), pad text);
        CREATE TABLE other (id integer PRIMARY KEY);
        CREATE INDEX t_a ON t (a);
        """
    )
    conn.executemany(
        "INSERT INTO t (a, b, pad) VALUES (?, 'x', ?)", [(i, "p" * 200) for i in range(2000)]
    )
    conn.commit()
    conn.close()
    yield path


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions only where the test says BEGIN.
    return sqlite3.connect(path, timeout=0, isolation_level=None)


SQLITE_STATEMENTS = {
    K.CREATE_TABLE: "CREATE TABLE n (id integer PRIMARY KEY)",
    K.DROP_TABLE: "DROP TABLE t",
    K.RENAME_TABLE: "ALTER TABLE t RENAME TO t2",
    K.ADD_COLUMN: "ALTER TABLE t ADD COLUMN c integer DEFAULT 5",
    K.DROP_COLUMN: "ALTER TABLE t DROP COLUMN pad",
    K.RENAME_COLUMN: "ALTER TABLE t RENAME COLUMN b TO b2",
    K.CREATE_INDEX: "CREATE INDEX t_b ON t (b)",
    K.DROP_INDEX: "DROP INDEX t_a",
    K.REINDEX: "REINDEX t_a",
    K.UPDATE: "UPDATE t SET a = a + 1 WHERE id = 1",
    K.INSERT: "INSERT INTO t (a) VALUES (1)",
    K.DELETE: "DELETE FROM t WHERE id = 1",
}


@pytest.mark.parametrize("kind", list(SQLITE_STATEMENTS), ids=lambda k: k.value)
def test_sqlite_write_blocks_every_writer_but_no_reader(db_path: Path, kind: StatementKind) -> None:
    if kind is K.DROP_COLUMN and PACKED < 33500:
        pytest.skip("ALTER TABLE DROP COLUMN needs SQLite 3.35")
    fact = LITE.lock(kind, PACKED)
    assert fact.table_mode is not None
    writer, other = _connect(db_path), _connect(db_path)
    try:
        writer.execute("BEGIN")
        writer.execute(SQLITE_STATEMENTS[kind])
        # The lock is the database's: a write to an unrelated table waits too.
        blocked = True
        try:
            other.execute("INSERT INTO other VALUES (1)")
            blocked = False
        except sqlite3.OperationalError as error:
            assert "locked" in str(error)
        assert blocked == fact.table_mode.blocks_writes
        # WAL mode: readers see the last committed state and do not wait.
        assert other.execute("SELECT count(*) FROM other").fetchone() == (0,)
        assert not fact.table_mode.blocks_reads
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        other.close()


def _wal_frames_written(path: Path, statement: str) -> int:
    conn = _connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute(statement)
        # The WAL grows by one frame per page written: a rewrite touches every page.
        return Path(f"{path}-wal").stat().st_size
    finally:
        conn.close()


@pytest.mark.parametrize("kind", [K.ADD_COLUMN, K.RENAME_COLUMN, K.DROP_COLUMN])
def test_sqlite_rewrite_facts_match_pages_written(db_path: Path, kind: StatementKind) -> None:
    if kind is K.DROP_COLUMN and PACKED < 33500:
        pytest.skip("ALTER TABLE DROP COLUMN needs SQLite 3.35")
    pages = sqlite3.connect(db_path).execute("PRAGMA page_count").fetchone()[0]
    page_size = sqlite3.connect(db_path).execute("PRAGMA page_size").fetchone()[0]
    written = _wal_frames_written(db_path, SQLITE_STATEMENTS[kind]) // page_size
    rewrote = written > pages // 2
    assert rewrote == LITE.lock(kind, PACKED).rewrites, (written, pages)


@pytest.mark.parametrize(
    ("kind", "statement"),
    [
        (K.ALTER_COLUMN_TYPE, "ALTER TABLE t ALTER COLUMN a TYPE bigint"),
        (K.SET_NOT_NULL, "ALTER TABLE t ALTER COLUMN a SET NOT NULL"),
        (K.DROP_NOT_NULL, "ALTER TABLE t ALTER COLUMN a DROP NOT NULL"),
        (K.SET_DEFAULT, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0"),
        (K.ADD_CHECK, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)"),
        (K.ADD_FOREIGN_KEY, "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES other"),
        (K.ADD_UNIQUE_CONSTRAINT, "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)"),
        (K.DROP_CONSTRAINT, "ALTER TABLE t DROP CONSTRAINT c"),
        (K.ADD_COLUMN_VOLATILE_DEFAULT, "ALTER TABLE t ADD COLUMN c text DEFAULT (random())"),
    ],
)
def test_sqlite_has_no_alter_form_so_the_fact_is_a_rebuild(
    db_path: Path, kind: StatementKind, statement: str
) -> None:
    conn = _connect(db_path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute(statement)
    finally:
        conn.close()
    fact = LITE.lock(kind, PACKED)
    assert fact.rewrites and fact.scans
    assert "_remake_table" in fact.note


@pytest.mark.parametrize(
    "kind",
    [
        K.CREATE_INDEX_CONCURRENTLY,
        K.ADD_CHECK_NOT_VALID,
        K.ADD_FOREIGN_KEY_NOT_VALID,
        K.VALIDATE_CONSTRAINT,
        K.DETACH_PARTITION_CONCURRENTLY,
        K.TRUNCATE,
        K.SET_LOCK_TIMEOUT,
    ],
)
def test_sqlite_refuses_kinds_it_cannot_run(kind: StatementKind) -> None:
    with pytest.raises(UnsupportedStatementError):
        SQLiteFacts().lock(kind, PACKED)


def test_sqlite_drop_column_before_3_35_is_a_rebuild() -> None:
    assert "_remake_table" in LITE.lock(K.DROP_COLUMN, 33400).note
