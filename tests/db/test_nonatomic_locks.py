"""Locks the migrating session cannot read itself: autocommit statements and failed ones.

A statement of a non-atomic migration commits before the session can read ``pg_locks``; a
statement that fails inside a transaction aborts it, and PostgreSQL releases the aborted
transaction's locks at the error. The probe samples both while they run (``"sampled":
true``). The table's rows come from a single ``INSERT ... SELECT generate_series`` in the S0
migration, so that the statements run long enough to be sampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from django_rollout.db.locks import Statement, Tracer
from tests._project import Project, judged_after_initial, migration, pg_settings

TOKEN = """\
migrations.CreateModel(
    "Token",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.CharField(max_length=40)),
    ],
),
"""
ROWS = 200_000
INSERT = (
    'migrations.RunSQL("INSERT INTO vault_token (name)'
    " SELECT 'token ' || {name} FROM generate_series(1, {rows}) i\")"
)
DISTINCT = INSERT.format(name="i", rows=ROWS)
# Every name twice: a unique index on it fails, once it has read and sorted every row.
DUPLICATED = INSERT.format(name="(i / 2)", rows=ROWS)
CONCURRENT_INDEX = (
    'AddIndexConcurrently("token", models.Index(fields=["name"], name="token_name_idx"))'
)
# A volatile default rewrites the table: long enough to be sampled.
ADD_COLUMN = (
    'migrations.RunSQL("ALTER TABLE vault_token ADD COLUMN rank integer'
    ' DEFAULT (random() * 10)::integer", migrations.RunSQL.noop)'
)
UNIQUE_NAME = (
    'migrations.AddConstraint("token", models.UniqueConstraint(fields=["name"],'
    ' name="token_name_uniq"))'
)
NOT_ATOMIC = "atomic = False"


def _project(root: Path, rows: str, *changes: tuple[str, str]) -> Project:
    """vault 0001 (S0: the table and its rows), then one migration per change."""
    project = Project(root)
    migrations = {"0001_initial": migration(TOKEN + rows + ",")}
    previous = "0001_initial"
    for n, (operation, extra) in enumerate(changes, start=2):
        name = f"{n:04d}_change"
        text = migration(operation, f'[("vault", "{previous}")]', extra)
        migrations[name] = "from django.contrib.postgres.operations import *\n" + text
        previous = name
    project.app("vault", migrations)
    project.configure(
        ["vault"],
        database=pg_settings(),
        extra=judged_after_initial("vault"),
    )
    return project


def _rehearse(project: Project, *args: str) -> dict[str, Any]:
    result = project.run(
        "--settings", project.settings, "rehearse", "--rows", "30", "--format", "json", *args
    )
    assert result.status in (0, 1), result.stderr
    doc: dict[str, Any] = result.json()
    return doc


def _locks(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [lock for s in statements for lock in s["locks"]]


def test_samples_the_locks_of_statements_in_non_atomic_migrations(tmp_path: Path) -> None:
    project = _project(tmp_path, DISTINCT, (CONCURRENT_INDEX, NOT_ATOMIC), (ADD_COLUMN, NOT_ATOMIC))
    doc = _rehearse(project)
    index, column = doc["steps"]
    assert index["status"] == "applied" and column["status"] == "applied"

    [build] = [s for s in index["statements"] if "CONCURRENTLY" in s["sql"]]
    assert {"relation": "vault_token", "mode": "ShareUpdateExclusiveLock"} in [
        {"relation": lock["relation"], "mode": lock["mode"]} for lock in build["locks"]
    ]
    assert all(lock["sampled"] for lock in build["locks"])
    assert build["traffic_wait_ms"] == 0  # the concurrent build lets traffic write
    assert all(0 < lock["held_ms"] <= build["duration_ms"] + 1 for lock in build["locks"])
    # Only user tables: neither the catalog nor the index itself.
    assert {lock["relation"] for lock in _locks(index["statements"])} == {"vault_token"}

    [alter] = [s for s in column["statements"] if s["sql"].startswith("ALTER TABLE")]
    # The rewrite also rebuilds the index, which takes SHARE on the table meanwhile.
    modes = {(lk["relation"], lk["mode"]): lk for lk in alter["locks"]}
    assert modes[("vault_token", "AccessExclusiveLock")]["held_ms"] > 0
    assert all(lock["sampled"] for lock in alter["locks"])


def test_long_dml_in_autocommit_is_sampled_at_the_probes_pace(tmp_path: Path) -> None:
    # Plain DML gets no sample of its own at its start (a row-by-row data migration runs
    # thousands); one that runs longer than an interval is still seen.
    update = "migrations.RunSQL(\"UPDATE vault_token SET name = name || 'x'\")"
    doc = _rehearse(_project(tmp_path, DISTINCT, (update, NOT_ATOMIC)))
    [step] = doc["steps"]
    [statement] = [s for s in step["statements"] if s["sql"].startswith("UPDATE")]
    assert statement["duration_ms"] > 50
    assert ("vault_token", "RowExclusiveLock") in {
        (lock["relation"], lock["mode"]) for lock in statement["locks"] if lock["sampled"]
    }


@pytest.mark.parametrize(
    ("sql", "dml"),
    [
        ('UPDATE "t" SET "a" = 1 WHERE "id" = 2', True),
        ("  select 1", True),
        ("(SELECT 1) UNION (SELECT 2)", True),
        ("WITH moved AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM moved", True),
        ('INSERT INTO "t" ("a") VALUES (1)', True),
        ("DELETE FROM t", True),
        ('ALTER TABLE "t" ADD COLUMN "b" integer NULL', False),
        ('CREATE INDEX CONCURRENTLY "i" ON "t" ("a")', False),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", False),
        ("VACUUM t", False),
        ("", False),
    ],
)
def test_plain_dml_is_told_from_statements_that_take_stronger_locks(sql: str, dml: bool) -> None:
    from django_rollout.db.locks import _is_dml

    assert _is_dml(sql) is dml


@pytest.mark.parametrize("traffic", ["traffic", "no-traffic"])
def test_failed_statement_keeps_the_locks_it_took_before_failing(
    tmp_path: Path, traffic: str
) -> None:
    project = _project(tmp_path, DUPLICATED, (UNIQUE_NAME, ""))
    doc = _rehearse(project, *(["--no-traffic"] if traffic == "no-traffic" else []))
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"
    [failed] = [s for s in step["statements"] if s["sql"] == step["error"]["statement"]]
    assert "token_name_uniq" in failed["sql"]
    # ALTER TABLE takes ACCESS EXCLUSIVE, then SHARE while it builds the index that fails.
    modes = {(lk["relation"], lk["mode"]): lk for lk in failed["locks"]}
    held = modes[("vault_token", "AccessExclusiveLock")]["held_ms"]
    assert 0 < held <= failed["duration_ms"] + 1
    assert all(lock["sampled"] for lock in failed["locks"])


class _Connection:
    vendor = "postgresql"
    in_atomic_block = False


def test_sampled_lock_is_held_from_first_sighting_to_the_sample_without_it() -> None:
    tracer = Tracer(_Connection(), origin=0.0)
    statement = Statement("CREATE INDEX CONCURRENTLY ...", started_ms=0.0)
    tracer._running = (statement, 0.0, True)  # as ``Tracer.__call__`` does in autocommit
    assert tracer.sampling is statement
    share = ("vault_token", "ShareUpdateExclusiveLock")
    access = ("vault_tag", "AccessShareLock")
    tracer.sampled(statement, [share, access], at=1.000)
    tracer.sampled(statement, [share], at=1.005)
    tracer.sampled(statement, [share], at=1.010)
    tracer._end_sampling(statement, end=1.012, keep=True)
    # A sample after the statement ended is not its.
    tracer.sampled(statement, [("vault_token", "AccessExclusiveLock")], at=1.020)
    got = {(lock.relation, lock.mode): lock for lock in statement.locks}
    assert set(got) == {share, access}
    assert all(lock.sampled for lock in statement.locks)
    assert got[share].held_ms == pytest.approx(12.0)
    assert got[access].held_ms == pytest.approx(5.0)
    assert got[share].to_dict()["sampled"] is True


def test_samples_of_a_statement_that_succeeds_in_a_transaction_are_dropped() -> None:
    # Its locks are read in-session, exactly; the samples only stand in for a failure.
    tracer = Tracer(_Connection(), origin=0.0)
    statement = Statement("ALTER TABLE ...", started_ms=0.0)
    tracer._running = (statement, 0.0, False)
    tracer.sampled(statement, [("vault_token", "AccessExclusiveLock")], at=1.0)
    tracer._end_sampling(statement, end=1.01, keep=False)
    assert statement.locks == [] and tracer.sampling is None


PLAIN_INDEX = 'migrations.AddIndex("token", models.Index(fields=["name"], name="token_name_idx"))'


def test_probe_sees_traffic_wait_behind_a_plain_index_build(tmp_path: Path) -> None:
    doc = _rehearse(_project(tmp_path, DISTINCT, (PLAIN_INDEX, "")))
    [step] = doc["steps"]
    [build] = [s for s in step["statements"] if s["sql"].startswith("CREATE INDEX")]
    assert build["traffic_wait_ms"] > 0
    # Read in-session: exact, held until the transaction ends.
    assert [(lk["relation"], lk["mode"], lk["sampled"]) for lk in build["locks"]] == [
        ("vault_token", "ShareLock", False)
    ]


class _Cursor:
    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str) -> None:
        return None

    def fetchall(self) -> list[tuple[str, str]]:
        return [("vault_token", "AccessExclusiveLock")]


class _InTransaction:
    vendor = "postgresql"
    in_atomic_block = True

    def __init__(self, savepoint_ids: list[str | None]) -> None:
        self.savepoint_ids = savepoint_ids
        self.connection = self  # the raw connection the tracer reads pg_locks through

    def cursor(self) -> _Cursor:
        return _Cursor()


def _fail(*args: Any) -> None:
    raise RuntimeError("could not create unique index")


@pytest.mark.parametrize(
    ("savepoints", "released"), [([None], True), (["s1_x"], False)], ids=["top", "savepoint"]
)
def test_failure_releases_the_transactions_locks_unless_inside_a_savepoint(
    savepoints: list[str | None], released: bool
) -> None:
    # An error aborts the whole transaction, whose locks go at once; inside a savepoint
    # only the savepoint's go, and the transaction goes on holding the rest.
    tracer = Tracer(_InTransaction(savepoints), origin=0.0)
    tracer(lambda *args: None, "ALTER TABLE vault_token ADD COLUMN x int", None, False, {})
    with pytest.raises(RuntimeError):
        tracer(_fail, "ALTER TABLE vault_token ADD CONSTRAINT u UNIQUE (name)", None, False, {})
    first, failed = tracer.statements
    assert [lock.mode for lock in first.locks] == ["AccessExclusiveLock"]
    assert failed.failed and failed.locks == []  # too quick for a sample
    assert (tracer._held == {}) is released


def test_statement_text_inlines_parameters_within_bounds() -> None:
    from django_rollout.db.locks import MAX_SQL_CHARS, _text

    assert _text('UPDATE "t" SET "a" = %s WHERE "id" = %s', ["x", 2]) == (
        'UPDATE "t" SET "a" = \'x\' WHERE "id" = 2'
    )
    assert _text("SELECT 1", None) == "SELECT 1"
    assert _text("SELECT %(a)s", {"a": 1}) == "SELECT %(a)s"  # named: left as written
    # A bulk insert's arrays: the first items of each, and how many there were.
    keys = [f"key {i}" for i in range(931)]
    bulk = _text('INSERT INTO "s" ("key", "note") SELECT * FROM UNNEST(%s, %s)', [keys, "n" * 500])
    assert "'key 9', ... 931 items]" in bulk and "'key 10'" not in bulk
    assert "... (502 characters)" in bulk
    # A long script is cut, saying how long it was.
    script = "SELECT 1;\n" * 1000
    cut = _text(script, None)
    assert cut.startswith(script[:MAX_SQL_CHARS]) and cut.endswith("... (10000 characters)")
