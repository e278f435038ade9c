"""What each statement of a migration runs, how long, what it locks, and who waits.

``Tracer`` wraps the migrating connection (``execute_wrapper``): every statement Django runs,
deferred SQL included, is recorded in the order it really runs, with its duration. On
PostgreSQL, the locks are those of relations (tables) in user schemas, and they are read:

* In-session, inside a transaction: right after each statement, before the transaction
  moves on, from ``pg_locks``; a lock is held from the statement that took it until the
  transaction ends. Exact.
* Sampled, for a statement in autocommit (a migration with ``atomic = False``, ``CREATE
  INDEX CONCURRENTLY``), which commits before the session could read anything: while it
  runs, ``Probe`` reads ``pg_locks`` for the migrating backend's pid every
  ``PROBE_INTERVAL_S``, and once as it starts unless it is plain DML (``SELECT``,
  ``INSERT``, ``UPDATE``, ``DELETE``: table locks no statement of the application waits
  for). Such locks carry ``sampled``; their ``held_ms`` runs from the first
  sample that saw the lock to the first that no longer did, or to the statement's end. A
  lock held for less than one interval can be missed.
* Sampled, for a statement that fails inside a transaction: PostgreSQL releases an aborted
  transaction's locks at the error, not at the rollback, so nothing is left to read
  afterwards. The probe samples every statement of a transaction that runs longer than
  one interval, and a failed statement keeps what those samples saw (a failure quicker
  than that shows no lock).

``Probe`` is a second session, one per traced migration. Besides sampling, it polls
``pg_blocking_pids`` for the traffic sessions and adds the time they spend blocked by the
migrating session to the statement running then (``traffic_wait_ms``), and the time the
migrating session spends blocked by one of them (``lock_wait_ms``: the migration queued
behind the application's transactions, which is what ``lock_timeout`` would cut short).
It names relations through its own catalog, so a table that the migrating transaction
created and has not committed yet is invisible to its samples.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

PROBE_INTERVAL_S = 0.005
# A statement's own wait for traffic's locks (``lock_wait_ms``) that the reports name: from
# a millisecond up; below that it is one probe round's rounding, not a queue.
NOTED_LOCK_WAIT_MS = 1.0

_LOCKS_SQL = """
SELECT c.relname, l.mode
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = {pid} AND l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
_OWN_LOCKS_SQL = _LOCKS_SQL.format(pid="pg_backend_pid()")
_PID_LOCKS_SQL = _LOCKS_SQL.format(pid="%s")

# One round of the probe: does the migrating session block a traffic session, and does a
# traffic session block it? (OFFSET 0 keeps the cheap filter on waiting sessions first.)
_BLOCKED_SQL = """
SELECT EXISTS (
  SELECT 1 FROM (
    SELECT pid FROM pg_stat_activity
    WHERE pid = ANY(%(traffic)s) AND wait_event_type = 'Lock' OFFSET 0
  ) waiting
  WHERE %(migrating)s = ANY(pg_blocking_pids(waiting.pid))
), EXISTS (
  SELECT 1 FROM (
    SELECT pid FROM pg_stat_activity
    WHERE pid = %(migrating)s AND wait_event_type = 'Lock' OFFSET 0
  ) waiting
  WHERE pg_blocking_pids(waiting.pid) && %(traffic)s::int[]
)
"""

Held = list[tuple[str, str]]  # (relation, mode)
# How much of a statement the report keeps: the whole text, and each parameter inlined.
MAX_SQL_CHARS = 4000
_MAX_VALUE_CHARS = 200
_MAX_ITEMS = 10
# Statements whose table locks (ACCESS SHARE, ROW SHARE, ROW EXCLUSIVE) conflict with no
# statement the application runs: an autocommit one is sampled at the probe's pace, not
# with a sample of its own at once (a row-by-row data migration runs thousands).
_DML = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "MERGE", "VALUES"})


@dataclass
class Lock:
    relation: str
    mode: str
    held_ms: float = 0.0
    # Seen by the probe's sampling, not read in-session: a short lock can be missed.
    sampled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "mode": self.mode,
            "held_ms": round(self.held_ms, 3),
            "sampled": self.sampled,
        }


@dataclass
class Statement:
    sql: str
    started_ms: float
    duration_ms: float = 0.0
    locks: list[Lock] = field(default_factory=list)
    traffic_wait_ms: float | None = None
    # How long the statement itself waited for a lock that a traffic session held (the
    # probe's rounds; None when no traffic ran beside it).
    lock_wait_ms: float | None = None
    failed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "sql": self.sql,
            "started_ms": round(self.started_ms, 3),
            "duration_ms": round(self.duration_ms, 3),
            "locks": [lock.to_dict() for lock in self.locks],
            "traffic_wait_ms": (
                None if self.traffic_wait_ms is None else round(self.traffic_wait_ms, 3)
            ),
            "lock_wait_ms": None if self.lock_wait_ms is None else round(self.lock_wait_ms, 3),
        }


class Tracer:
    """Record the statements of one migration on ``connection``."""

    def __init__(self, connection: Any, origin: float, trace_locks: bool = True) -> None:
        self.connection = connection
        self.origin = origin
        self.trace_locks = trace_locks and connection.vendor == "postgresql"
        self.statements: list[Statement] = []
        self.tracing_s = 0.0  # time the migration spent reading pg_locks: tracing's cost
        # The second session, while one runs (``Probe`` sets it).
        self.probe: Probe | None = None
        self._held: dict[tuple[str, str], tuple[Lock, float]] = {}
        self._guard = threading.Lock()
        # The statement the probe may sample: (statement, its start, in autocommit), and
        # what the samples saw, (relation, mode) -> [lock, first seen, still seen].
        self._running: tuple[Statement, float, bool] | None = None
        self._seen: dict[tuple[str, str], list[Any]] = {}

    @property
    def current(self) -> Statement | None:
        with self._guard:
            return self.statements[-1] if self.statements else None

    @property
    def sampling(self) -> Statement | None:
        """The statement to sample now: one in autocommit, or one in a transaction that has
        run for an interval (should it fail, its samples are all there is of its locks)."""
        with self._guard:
            if self._running is None:
                return None
            statement, start, autocommit = self._running
        if autocommit or time.perf_counter() - start >= PROBE_INTERVAL_S:
            return statement
        return None

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = time.perf_counter()
        statement = Statement(sql=_text(sql, params), started_ms=(start - self.origin) * 1000)
        if self.connection.vendor == "postgresql":
            statement.traffic_wait_ms = 0.0
            if self.probe is not None and self.probe.traffic_pids:
                statement.lock_wait_ms = 0.0
        autocommit = not self.connection.in_atomic_block
        if self.trace_locks and autocommit and self._held:
            # A transaction inside a non-atomic migration (an atomic RunPython) has ended.
            self.released(start)
        with self._guard:
            self.statements.append(statement)
            if self.trace_locks:
                self._running, self._seen = (statement, start, autocommit), {}
        if self.trace_locks and autocommit and self.probe is not None and not _is_dml(sql):
            self.probe.wake()  # a first sample now, not an interval later
        try:
            result = execute(sql, params, many, context)
        except Exception:
            statement.failed = True
            end = time.perf_counter()
            statement.duration_ms = (end - start) * 1000
            if self.trace_locks:
                # PostgreSQL releases an aborted transaction's locks at the error, not at the
                # rollback: what the samples saw is all there is.
                self._end_sampling(statement, end, keep=True)
                if not autocommit and not any(self.connection.savepoint_ids):
                    self.released(end)  # the whole transaction's, not a savepoint's
            raise
        end = time.perf_counter()
        statement.duration_ms = (end - start) * 1000
        if self.trace_locks:
            self._end_sampling(statement, end, keep=autocommit)
            if not autocommit:
                with self.connection.connection.cursor() as cursor:  # raw: not traced itself
                    cursor.execute(_OWN_LOCKS_SQL)
                    rows = cursor.fetchall()
                for relation, mode in rows:
                    key = (relation, mode)
                    if key not in self._held:
                        lock = Lock(relation, mode)
                        self._held[key] = (lock, start)
                        statement.locks.append(lock)
                self.tracing_s += time.perf_counter() - end
        return result

    def sampled(self, statement: Statement, rows: Held, at: float) -> None:
        """Record what one sample taken at ``at`` saw while ``statement`` ran."""
        with self._guard:
            if self._running is None or self._running[0] is not statement:
                return  # it ended while the sample was on its way
            seen = set(rows)
            for key in seen:
                if key in self._seen:
                    self._seen[key][2] = True
                else:
                    self._seen[key] = [Lock(key[0], key[1], sampled=True), at, True]
            for key, entry in self._seen.items():
                if entry[2] and key not in seen:  # released between two samples
                    lock, first, _ = entry
                    lock.held_ms = (at - first) * 1000
                    entry[2] = False

    def _end_sampling(self, statement: Statement, end: float, keep: bool) -> None:
        """Stop sampling ``statement``; with ``keep``, give it the locks the samples saw
        that its transaction did not hold before it (they end with the statement)."""
        with self._guard:
            seen, self._running, self._seen = self._seen, None, {}
        if not keep:
            return
        for key, (lock, first, still) in seen.items():
            if key in self._held:
                continue
            if still:
                lock.held_ms = (end - first) * 1000
            statement.locks.append(lock)

    def released(self, now: float | None = None) -> None:
        """The transaction ended: every lock taken so far is released now."""
        now = time.perf_counter() if now is None else now
        for lock, since in self._held.values():
            lock.held_ms = (now - since) * 1000
        self._held.clear()


def _is_dml(sql: str) -> bool:
    words = sql.lstrip(" \t\n(").split(None, 1)
    return bool(words) and words[0].upper() in _DML


def _text(sql: str, params: Any) -> str:
    """The statement as the report shows it: its parameters inlined, each cut to a readable
    length, the whole to ``MAX_SQL_CHARS`` (a data migration's bulk insert carries every
    row it copies, and formatting all of them would be tracing's cost, not the migration's)."""
    text = str(sql)
    if params:
        with suppress(TypeError, ValueError):  # not %s placeholders, or executemany
            text = text % tuple(_shown(p) for p in params)
    if len(text) <= MAX_SQL_CHARS:
        return text
    return f"{text[:MAX_SQL_CHARS]}... ({len(text)} characters)"


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) > _MAX_ITEMS:
        head = ", ".join(_shown(v) for v in value[:_MAX_ITEMS])
        return f"[{head}, ... {len(value)} items]"
    text = repr(value)
    if len(text) <= _MAX_VALUE_CHARS:
        return text
    return f"{text[:_MAX_VALUE_CHARS]}... ({len(text)} characters)"


class Probe:
    """A second session on the migrating session's database; see the module doc."""

    def __init__(self, alias: str, migrating_pid: int, tracer: Tracer) -> None:
        self.alias = alias
        self.migrating_pid = migrating_pid
        self.tracer = tracer
        self.traffic_pids: list[int] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lock-probe")

    def __enter__(self) -> Probe:
        self.tracer.probe = self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracer.probe = None
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """Take the next round now rather than at the end of the interval."""
        self._wake.set()

    def _run(self) -> None:
        from django.db import connections

        connection = connections[self.alias]
        try:
            connection.ensure_connection()  # now, not when the first long statement runs
            last = time.perf_counter()
            while not self._stop.is_set():
                target = self.tracer.sampling
                if target is not None:
                    at = time.perf_counter()
                    self.tracer.sampled(target, self._locks(connection), at)
                blocking, waiting = (
                    self._blocked(connection) if self.traffic_pids else (False, False)
                )
                now = time.perf_counter()
                current = self.tracer.current
                if current is not None:
                    if blocking and current.traffic_wait_ms is not None:
                        current.traffic_wait_ms += (now - last) * 1000
                    if waiting and current.lock_wait_ms is not None:
                        current.lock_wait_ms += (now - last) * 1000
                last = now
                self._wake.wait(PROBE_INTERVAL_S)
                self._wake.clear()
        finally:
            connection.close()

    def _locks(self, connection: Any) -> Held:
        with connection.cursor() as cursor:
            cursor.execute(_PID_LOCKS_SQL, [self.migrating_pid])
            return [(str(relation), str(mode)) for relation, mode in cursor.fetchall()]

    def _blocked(self, connection: Any) -> tuple[bool, bool]:
        """Return whether the migrating session blocks a traffic session now, and whether a
        traffic session blocks it."""
        # pg_blocking_pids reads the whole lock table under the lock manager's locks, which
        # every session's next lock waits for: call it only for sessions waiting on a lock,
        # and stop at the first traffic session that the migrating session blocks.
        with connection.cursor() as cursor:
            cursor.execute(
                _BLOCKED_SQL, {"traffic": list(self.traffic_pids), "migrating": self.migrating_pid}
            )
            row = cursor.fetchone()
        return (bool(row[0]), bool(row[1])) if row else (False, False)
