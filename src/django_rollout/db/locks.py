"""What each statement of a migration runs, how long, what it locks, and who waits.

``Tracer`` wraps the migrating connection (``execute_wrapper``): every statement Django runs,
deferred SQL included, is recorded in the order it really runs, with its duration. On
PostgreSQL, inside a transaction, the relations the session holds are read from
``pg_locks`` in the same session right after each statement, before the transaction moves
on; a lock is held from the statement that took it until the transaction ends. ``Probe``
is a second session that polls ``pg_blocking_pids`` for the traffic sessions and adds the
time they spend blocked by the migrating session to the statement running then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROBE_INTERVAL_S = 0.005

_LOCKS_SQL = """
SELECT c.relname, l.mode
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


@dataclass
class Lock:
    relation: str
    mode: str
    held_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"relation": self.relation, "mode": self.mode, "held_ms": round(self.held_ms, 3)}


@dataclass
class Statement:
    sql: str
    started_ms: float
    duration_ms: float = 0.0
    locks: list[Lock] = field(default_factory=list)
    traffic_wait_ms: float | None = None
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
        }


class Tracer:
    """Record the statements of one migration on ``connection``."""

    def __init__(self, connection: Any, origin: float, trace_locks: bool = True) -> None:
        self.connection = connection
        self.origin = origin
        self.trace_locks = trace_locks and connection.vendor == "postgresql"
        self.statements: list[Statement] = []
        self.tracing_s = 0.0  # time spent reading pg_locks: the cost of tracing
        self._held: dict[tuple[str, str], tuple[Lock, float]] = {}
        self._guard = threading.Lock()

    @property
    def current(self) -> Statement | None:
        with self._guard:
            return self.statements[-1] if self.statements else None

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = time.perf_counter()
        statement = Statement(sql=_text(sql, params), started_ms=(start - self.origin) * 1000)
        if self.connection.vendor == "postgresql":
            statement.traffic_wait_ms = 0.0
        with self._guard:
            self.statements.append(statement)
        try:
            result = execute(sql, params, many, context)
        except Exception:
            statement.failed = True
            statement.duration_ms = (time.perf_counter() - start) * 1000
            raise
        statement.duration_ms = (time.perf_counter() - start) * 1000
        if self.trace_locks and self.connection.in_atomic_block:
            self._read_locks(statement, start)
        return result

    def _read_locks(self, statement: Statement, start: float) -> None:
        began = time.perf_counter()
        with self.connection.connection.cursor() as cursor:  # raw: not traced itself
            cursor.execute(_LOCKS_SQL)
            rows = cursor.fetchall()
        for relation, mode in rows:
            key = (relation, mode)
            if key not in self._held:
                lock = Lock(relation, mode)
                self._held[key] = (lock, start)
                statement.locks.append(lock)
        self.tracing_s += time.perf_counter() - began

    def released(self) -> None:
        """The transaction ended: every lock taken so far is released now."""
        now = time.perf_counter()
        for lock, since in self._held.values():
            lock.held_ms = (now - since) * 1000
        self._held.clear()


def _text(sql: str, params: Any) -> str:
    if not params:
        return str(sql)
    try:
        return str(sql) % tuple(repr(p) for p in params)
    except (TypeError, ValueError):
        return str(sql)


class Probe:
    """A second session that sees traffic blocked by the migrating session."""

    def __init__(self, alias: str, migrating_pid: int, tracer: Tracer) -> None:
        self.alias = alias
        self.migrating_pid = migrating_pid
        self.tracer = tracer
        self.traffic_pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lock-probe")

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from django.db import connections

        connection = connections[self.alias]
        try:
            last = time.perf_counter()
            while not self._stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    rows = cursor.fetchall()
                now = time.perf_counter()
                pids = set(self.traffic_pids)
                blocked = any(
                    pid in pids and self.migrating_pid in (blockers or ()) for pid, blockers in rows
                )
                current = self.tracer.current
                if blocked and current is not None and current.traffic_wait_ms is not None:
                    current.traffic_wait_ms += (now - last) * 1000
                last = now
                self._stop.wait(PROBE_INTERVAL_S)
        finally:
            connection.close()
