"""Old- and new-code traffic on a scratch database, and the errors the database gives it.

Traffic does what the ORM of a code version does on each table: create a row with the
model's defaults, read every field, update every field, delete. Old code is approximated by
the historical models of S0, new code by the project's real models (their ``save()``,
signals and managers). ``Traffic.round`` runs each action once per model and returns what
failed; ``Traffic.background`` keeps doing it in threads, one per table, while a migration
runs, so that every statement has traffic on every table it locks.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import FieldError
from django.db import DatabaseError, IntegrityError, models
from django.db.models.deletion import ProtectedError, RestrictedError

from django_rollout.db.adversary import Attack, insert, rows_for
from django_rollout.db.seed import new_row
from django_rollout.errors import first_line

# Numbers for traffic rows start far beyond the seeded ones, so unique values stay unique.
FIRST_ROW = 10_000_000
PAUSE_S = 0.002
# Sessions of background traffic per code version: each cycles through a share of the
# tables, so a large project does not exhaust the server's max_connections.
MAX_THREADS = 16
# Row numbers a forked background phase may use; the parent goes on past them.
ROWS_PER_BACKGROUND = 100_000
# With the tables a migration works on known: sessions on each of them, and sessions that
# cycle through every other table of S0 (see ``session_shares``). One per table: two
# sessions creating rows of one model pick the same free row for a one-to-one and collide
# on a uniqueness the code itself declares, a race of their own, not the deploy's.
HOT_SESSIONS = 1
COLD_SESSIONS = 2
# How long ``background`` waits for its sessions to connect before the block runs anyway.
CONNECT_TIMEOUT_S = 10.0
# The forked traffic process's niceness: see ``Traffic.background``.
NICE = 10


@dataclass(frozen=True)
class Observed:
    """An error the database raised: where, for whom, its SQLSTATE and its own text."""

    sqlstate: str | None
    message: str
    app_label: str | None = None
    migration: str | None = None
    code_version: str | None = None  # "old", "new", or None for the migration itself
    action: str | None = None  # create, read, update, delete, or "migrate"
    statement: str | None = None
    table: str | None = None
    column: str | None = None
    constraint: str | None = None
    # "interleaved": the application, started before ``migration`` ran, hit it.
    during: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# SQLite gives no SQLSTATE: its messages map onto PostgreSQL's codes for the same failure.
_SQLITE = (
    (re.compile(r"NOT NULL constraint failed: (\w+)\.(\w+)"), "23502"),
    (re.compile(r"UNIQUE constraint failed: (\w+)\.(\w+)"), "23505"),
    (re.compile(r"FOREIGN KEY constraint failed()()"), "23503"),
    (re.compile(r"CHECK constraint failed: ()(\w+)"), "23514"),
    (re.compile(r"table (\w+) has no column named (\w+)"), "42703"),
    (re.compile(r"no such column: ()([\w.]+)"), "42703"),
    (re.compile(r"no such table: ()(\w+)"), "42P01"),
)


_POSTGRESQL = (
    re.compile(r'^column "(?P<column>[^"]+)" of relation "(?P<table>[^"]+)" does not exist'),
    re.compile(r'^column (?:"?(?P<table>[^".\s]+)"?\.)"?(?P<column>[^"\s]+)"? does not exist'),
    re.compile(r'^relation "(?:[^".]+\.)?(?P<table>[^"]+)" does not exist'),
    # A column gone from a table that is named like an aggregate reads as one of its row,
    # ``t.count`` as count(t): the table is known, the column named is not the missing one.
    re.compile(r'^column "(?P<table>[^".]+)\.[^"]+" must appear in the GROUP BY clause'),
)


def observe(exc: BaseException, **where: Any) -> Observed:
    """Return what ``exc`` tells: SQLSTATE, message, table, column, constraint."""
    cause: BaseException | None = exc
    while cause is not None:
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if sqlstate:
            diag = getattr(cause, "diag", None)
            message = first_line(cause)
            table = getattr(diag, "table_name", None)
            column = getattr(diag, "column_name", None)
            if table is None:
                # Undefined table and column errors name them only in their text.
                for pattern in _POSTGRESQL:
                    if found := pattern.search(message):
                        named = found.groupdict()
                        table, column = named.get("table"), column or named.get("column")
                        break
            return Observed(
                sqlstate=str(sqlstate),
                message=message,
                table=table,
                column=column,
                constraint=getattr(diag, "constraint_name", None),
                **where,
            )
        cause = cause.__cause__
    message = first_line(exc)
    for pattern, code in _SQLITE:
        found = pattern.search(message)
        if found:
            table, name = found.group(1) or None, found.group(2) or None
            if table and table.startswith("new__"):
                table = table[len("new__") :]  # Django remakes SQLite tables under new__<name>
            if code == "42P01":
                table, name = name, None
            if code == "23514":
                return Observed(code, message, constraint=name, **where)
            return Observed(code, message, table=table, column=name, **where)
    return Observed(None, message, **where)


@dataclass
class Counters:
    """How much traffic ran and failed, per code version; ``refused``: what was turned down
    before the database had a say, the new release's writes by its own code and any query
    the ORM refused with FieldError (see ``Traffic._attempt``), not counted as failed."""

    actions: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def add(self, version: str, failed: bool, refused: bool = False) -> None:
        self.actions[version] = self.actions.get(version, 0) + 1
        if failed:
            self.errors[version] = self.errors.get(version, 0) + 1
        if refused:
            self.refused[version] = self.refused.get(version, 0) + 1

    def merge(self, other: Counters) -> None:
        """Add the counts of another process's traffic."""
        for mine, theirs in (
            (self.actions, other.actions),
            (self.errors, other.errors),
            (self.refused, other.refused),
        ):
            for version, count in theirs.items():
                mine[version] = mine.get(version, 0) + count


class Traffic:
    """Traffic of one or more code versions on the scratch database of ``alias``."""

    def __init__(self, alias: str, first_row: int = FIRST_ROW) -> None:
        self.alias = alias
        self.counters = Counters()
        self._lock = threading.Lock()
        self._n = first_row
        # Rows that rows kept by new code point at: (table, column) -> values. Old code
        # deletes them in its next round (``round(..., keep=True)`` fills it).
        self.referenced: dict[tuple[str, str], set[Any]] = {}
        # Rows a session created and is about to delete: table -> pks. New rows do not
        # point at them (that race is the application's everyday life, not the deploy's).
        self._transient: dict[str, list[Any]] = {}
        # Rows a keeping round made, table -> pks: its later rows point at them.
        self._kept: dict[str, list[Any]] = {}
        # Rows a session made and then deleted itself, table -> pks.
        self._cleaned: dict[str, set[Any]] = {}

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def reserve(self) -> int:
        """Set aside a block of row numbers for another process's traffic; return its first."""
        with self._lock:
            first = self._n
            self._n += ROWS_PER_BACKGROUND
            return first

    def round(
        self,
        model_list: Sequence[type[models.Model]],
        version: str,
        app_label: str | None = None,
        migration: str | None = None,
        keep: bool = False,
        known: frozenset[tuple[str, str]] = frozenset(),
    ) -> list[Observed]:
        """Create, read, update and delete once on every model; return what failed.

        With ``keep`` the created rows stay, and the rows they point at through a relation
        that is not in ``known`` ((table, column) of the relations the other live release
        has) are remembered in ``referenced``. Without it, the round also deletes the
        remembered rows of its models, through its own models: a release that does not
        know a relation does not cascade along it, and the database refuses.
        """
        errors: list[Observed] = []
        for model in model_list:
            errors.extend(self._cycle(model, version, app_label, migration, keep, known))
        return errors

    def _cycle(
        self,
        model: type[models.Model],
        version: str,
        app_label: str | None,
        migration: str | None,
        keep: bool = False,
        known: frozenset[tuple[str, str]] = frozenset(),
    ) -> list[Observed]:
        table = model._meta.db_table
        where = {"app_label": app_label, "migration": migration, "code_version": version}
        errors: list[Observed] = []

        def attempt(action: str, do: Any) -> Any:
            return self._attempt(action, do, table, where, errors)

        def create(minimal: bool) -> models.Model | None:
            # Choosing the related rows reads the database: part of the create.
            made = new_row(
                model,
                self.alias,
                self._next(),
                minimal=minimal,
                avoid=self._transient_in,
                prefer=lambda f: self._kept_in(f, known) if keep else (),
            )
            if made is not None:
                try:
                    made.save(using=self.alias, force_insert=True)
                except IntegrityError as exc:
                    if self._own_race(made, exc):
                        return None
                    if version == "new" and self._target_gone(made, exc, known):
                        return None
                    raise
                with self._lock:
                    mark = self._kept if keep else self._transient
                    mark.setdefault(table, []).append(made.pk)
            return made

        manager = model._base_manager.db_manager(self.alias)
        # One row with every nullable field left NULL (a form left blank), one filled.
        made = [attempt("create", lambda m=minimal: create(m)) for minimal in (True, False)]
        mine = [row for row in made if row is not None and row.pk is not None]
        attempt("read", lambda: list(manager.order_by("pk")[:5]))
        # The oldest row: one that no other session deletes under it.
        existing = attempt("read", lambda: manager.order_by("pk").first())
        if existing is not None:
            attempt("update", lambda: _update(existing, self.alias))
        if keep:
            for row in mine:
                self._remember(row, known)
        elif mine:
            pks = {row.pk for row in mine}
            attempt("delete", lambda: self._delete_own(model, manager.filter(pk__in=pks)))
            with self._lock:
                left = [pk for pk in self._transient.get(table, ()) if pk not in pks]
                self._transient[table] = left
                self._cleaned.setdefault(table, set()).update(pks)
        if not keep:
            for name, values in self._referenced_in(model):
                gone = manager.filter(**{f"{name}__in": values})
                attempt("delete", gone.delete)
        return errors

    def _attempt(
        self,
        action: str,
        do: Any,
        table: str,
        where: dict[str, Any],
        errors: list[Observed],
    ) -> Any:
        """Run ``do``; a database error is recorded in ``errors``, not raised."""
        version = where["code_version"]
        try:
            result = do()
        except (ProtectedError, RestrictedError):
            # The ORM refused (on_delete=PROTECT): the application sees that any day.
            self.counters.add(version, failed=False)
            return None
        except Exception as exc:  # the database's error is the observation
            if not _from_database(exc) and (
                isinstance(exc, FieldError) or (version == "new" and action != "read")
            ):
                # The new release's own code turned the row down (a save() or a signal
                # checking what it is given, as its forms would first): synthetic rows
                # meet that, production's requests do not, and the schema had no say.
                # A FieldError is the ORM refusing the model's own query before any SQL:
                # for the old release, a migration state that contradicts itself (Django's
                # RenameField leaves Meta.ordering naming the old field), which the code
                # that served then never had.
                self.counters.add(version, failed=False, refused=True)
                return None
            found = observe(exc, action=action, **where)
            if found.table is None:
                found = replace(found, table=table)
            if found.sqlstate == "23503" and found.constraint and found.column is None:
                # PostgreSQL names the foreign key, not its column: look the column up, so
                # that the violation confirms the finding about that reference only.
                found = replace(found, column=self._fk_column(found.constraint))
            errors.append(found)
            self.counters.add(version, failed=True)
            return None
        self.counters.add(version, failed=False)
        return result

    def write(
        self,
        model: type[models.Model],
        attack: Attack,
        version: str,
        app_label: str | None,
        migration: str | None,
    ) -> list[Observed]:
        """Create the rows of ``attack`` through ``model`` (a code version's); return what
        failed. The rows that went in are deleted again."""
        where = {"app_label": app_label, "migration": migration, "code_version": version}
        errors: list[Observed] = []
        table = model._meta.db_table
        manager = model._base_manager.db_manager(self.alias)

        def create() -> list[Any]:
            made = []
            for row in rows_for(attack, model, self.alias, self._next()):
                insert(row, self.alias)
                made.append(row.pk)
            return made

        made = self._attempt("create", create, table, where, errors)
        if made:
            self._attempt("delete", manager.filter(pk__in=made).delete, table, where, errors)
        return errors

    def _own_race(self, row: models.Model, exc: IntegrityError) -> bool:
        """Whether ``row`` failed its foreign key because it points at a row that another
        session of this traffic made and deleted again between the choice and the insert:
        a race of the traffic's own (the row is marked as transient only once its insert
        returns), the application's everyday life, not the deploy's."""
        if observe(exc).sqlstate != "23503":
            return False
        with self._lock:
            for f in row._meta.concrete_fields:
                if f.is_relation and f.related_model is not None:
                    cleaned = self._cleaned.get(f.related_model._meta.db_table, set())
                    if getattr(row, f.attname) in cleaned:
                        return True
        return False

    def _target_gone(
        self, row: models.Model, exc: IntegrityError, known: frozenset[tuple[str, str]]
    ) -> bool:
        """Whether ``row`` failed its foreign key because the row it points at is gone, through
        a relation the other release also has (``known``): that release deleted it between the
        choice and the insert, and its ORM would have cascaded or refused had the row come
        first. A race every application has, which ``_own_race`` cannot see when the other
        release's sessions ran in another process. Through a relation the other release does
        not know, its delete of the target is the hazard itself (C109's), and stays reported.
        Asked for the new release only: it never runs beside a migration, which could have
        deleted the row. A target that still exists means the constraint points elsewhere."""
        from django.db import connections

        found = observe(exc)
        if found.sqlstate != "23503" or found.constraint is None:
            return False
        if connections[self.alias].in_atomic_block:
            return False
        table = row._meta.db_table
        with contextlib.suppress(DatabaseError):
            columns = self._columns(found.constraint)
            for f in row._meta.concrete_fields:
                value = getattr(row, f.attname)
                if f.column not in columns or not f.is_relation or value is None:
                    continue
                if (table, f.column) not in known:
                    return False
                target = f.related_model._base_manager.db_manager(self.alias)
                if not target.filter(**{f.target_field.attname: value}).exists():
                    return True
        return False

    def _delete_own(self, model: type[models.Model], rows: Any) -> Any:
        """Delete rows this session made. A foreign key violation through a column whose
        relation to ``model`` this code knows, with an ``on_delete`` the ORM carries out
        (cascade, protect, set null, ...), is a race of the traffic's own: another session
        inserted a row pointing at one of them after the ORM had collected what to cascade,
        which happens any day. Through a relation this code does not know, or one it leaves
        to the database (``DO_NOTHING``), the violation is the deploy's (C109)."""
        try:
            return rows.delete()
        except IntegrityError as exc:
            found = observe(exc)
            if found.sqlstate != "23503" or found.constraint is None:
                raise
            if _handled_on_delete(model, found.table, self._columns(found.constraint)):
                return None
            raise

    def _columns(self, constraint: str) -> frozenset[str]:
        """The referencing columns of the foreign key constraint named ``constraint``."""
        from django.db import connections

        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a"
                " ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
                " WHERE c.conname = %s AND c.contype = 'f'",
                [constraint],
            )
            return frozenset(str(row[0]) for row in cursor.fetchall())

    def _fk_column(self, constraint: str) -> str | None:
        """The one referencing column of a foreign key, or None: several, or no way to ask
        (inside a transaction, which an error has aborted)."""
        from django.db import connections

        if connections[self.alias].in_atomic_block:
            return None
        with contextlib.suppress(DatabaseError):
            columns = self._columns(constraint)
            if len(columns) == 1:
                return next(iter(columns))
        return None

    def _transient_in(self, table: str) -> set[Any]:
        with self._lock:
            return set(self._transient.get(table, ()))

    def _kept_in(self, relation: Any, known: frozenset[tuple[str, str]]) -> list[Any]:
        """Rows this keeping round made in the relation's target table, when the other
        release does not know the relation (through one it knows, its delete cascades or
        is refused, like any day's)."""
        if (relation.model._meta.db_table, relation.column) in known:
            return []
        with self._lock:
            return list(self._kept.get(relation.related_model._meta.db_table, ()))

    def forget_kept(self) -> None:
        """End a rollout: the next keeping round starts from no preferred rows."""
        with self._lock:
            self._kept.clear()
            self.referenced.clear()

    def _remember(self, row: models.Model, known: frozenset[tuple[str, str]]) -> None:
        table = row._meta.db_table
        for f in row._meta.concrete_fields:
            if (table, f.column) in known:
                continue
            if f.is_relation and (value := getattr(row, f.attname)) is not None:
                target = f.target_field  # type: ignore[attr-defined]
                key = (target.model._meta.db_table, target.column)
                with self._lock:
                    self.referenced.setdefault(key, set()).add(value)

    def _referenced_in(self, model: type[models.Model]) -> list[tuple[str, list[Any]]]:
        """(field name, values) of this model's rows that kept rows point at."""
        table = model._meta.db_table
        out = []
        for f in model._meta.concrete_fields:
            values = self.referenced.get((table, f.column))
            if values:
                out.append((f.name, sorted(values, key=str)))
        return out

    @contextmanager
    def background(
        self,
        model_list: Sequence[type[models.Model]],
        version: str,
        where: dict[str, Any],
        sink: list[Observed],
        hot: frozenset[str] | None = None,
    ) -> Iterator[list[int]]:
        """Run ``round`` in sessions of their own (each cycling through its share of the models,
        ``session_shares``: ``hot`` are the tables the migration works on, None when it may touch
        any table) until the block ends; errors go to ``sink`` (the first of each kind), the
        sessions' backend pids are yielded for the probe. The block starts once every session has
        connected (or failed to): a migration of a few milliseconds would otherwise run before any
        traffic does, beside a storm of connections that is the harness's, not production's.

        Where the platform forks, the sessions run in a child process: a release's traffic
        comes from other servers, and threads of this one would share its interpreter lock
        with the migration they are meant to wait behind (on two cores, 16 such threads made
        the migrate part 26 times slower than a plain ``migrate``). The child also runs at a
        lower priority (``NICE``): production's application servers do not take CPU from
        the process that runs ``migrate``, and on a small machine the traffic's own Python
        starved the migrating one, which held its locks the longer for it (see
        ``benchmarks/README.md``). Its database sessions keep their priority.

        The child leaves the migrating process's session (``_own_session``): where Linux
        groups the scheduling by session (autogroup, on by default), niceness only weighs
        threads of one session against each other, and the traffic's CPU time was charged to
        the group the migrating thread shares, which then waited behind every other group
        (each PostgreSQL backend is one: the postmaster's children call ``setsid``). The
        child's own group gets the niceness instead. Ctrl-C at a terminal reaches the
        parent only, which ends the child through ``stop`` as it ends it on success; a child
        whose parent died sees ``stop`` close and leaves.
        """
        if not hasattr(os, "fork"):
            stop = threading.Event()
            pids: list[int] = []
            settled: list[int] = []
            shares = session_shares(model_list, hot)
            threads = self._sessions(shares, version, where, stop, pids, sink, settled.append)
            _await(lambda: len(settled) >= len(threads))
            try:
                yield pids
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
            return
        with self._forked(session_shares(model_list, hot), version, where, sink) as pids:
            yield pids

    def _sessions(
        self,
        shares: Sequence[Sequence[type[models.Model]]],
        version: str,
        where: dict[str, Any],
        stop: threading.Event,
        pids: list[int],
        sink: list[Observed],
        connected: Any = None,
    ) -> list[threading.Thread]:
        """Start the traffic threads; they run until ``stop`` is set."""
        seen: set[tuple[Any, ...]] = set()
        guard = threading.Lock()

        def record(found: Observed) -> None:
            key = (found.sqlstate, found.table, found.action)
            with guard:
                if key not in seen:
                    seen.add(key)
                    sink.append(found)

        def loop(share: Sequence[type[models.Model]]) -> None:
            from django.db import connections

            settled = False
            try:
                connection = connections[self.alias]
                connection.ensure_connection()
                _commit_without_flush(connection)
                pid = backend_pid(connection)
                with guard:
                    if pid is not None:
                        pids.append(pid)
                    settled = True
                    if connected is not None:
                        connected(pid or 0)
                while not stop.is_set():
                    for model in share:
                        app_label, migration = where.get("app_label"), where.get("migration")
                        for found in self._cycle(model, version, app_label, migration):
                            record(found)
                    time.sleep(PAUSE_S)
            except Exception as exc:  # a session traffic could not open: say so, go on
                record(observe(exc, action="connect", code_version=version, **where))
            finally:
                if not settled and connected is not None:
                    with guard:
                        connected(0)  # no session: nothing to wait for
                connections[self.alias].close()

        threads = [
            threading.Thread(target=loop, args=(share,), daemon=True, name=f"traffic-{version}")
            for share in shares
        ]
        for thread in threads:
            thread.start()
        return threads

    @contextmanager
    def _forked(
        self,
        shares: Sequence[Sequence[type[models.Model]]],
        version: str,
        where: dict[str, Any],
        sink: list[Observed],
    ) -> Iterator[list[int]]:
        """The sessions in a forked child. Pipes: the child says each session's backend pid
        as it connects (0 for one that could not), waits for the parent to close ``stop``,
        then sends back what it saw (errors, counters) pickled. The child never touches the
        connections it inherited (their sockets are the parent's) and leaves with
        ``os._exit``, so none is closed."""
        pid_read, pid_write = os.pipe()
        out_read, out_write = os.pipe()
        stop_read, stop_write = os.pipe()
        first = self.reserve()  # the child numbers its rows in a block of its own
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child; its effects are asserted
            status = 0
            try:
                for fd in (pid_read, out_read, stop_write):
                    os.close(fd)
                _own_session(NICE)  # before the threads, which inherit it
                self._n = first
                self.counters = Counters()
                self._lock = threading.Lock()
                stop = threading.Event()
                seen_pids: list[int] = []
                found: list[Observed] = []
                threads = self._sessions(
                    shares,
                    version,
                    where,
                    stop,
                    seen_pids,
                    found,
                    lambda pid: os.write(pid_write, struct.pack("!i", pid)),
                )
                os.read(stop_read, 1)  # returns when the parent closes its end
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
                payload = pickle.dumps((found, self.counters))
                with os.fdopen(out_write, "wb") as out:
                    out.write(payload)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        for fd in (pid_write, out_write, stop_read):
            os.close(fd)
        pids: list[int] = []
        settled = [0]

        def read_pids() -> None:
            with os.fdopen(pid_read, "rb") as stream:
                while chunk := stream.read(4):
                    if len(chunk) == 4:
                        pid = struct.unpack("!i", chunk)[0]
                        if pid:
                            pids.append(pid)
                        settled[0] += 1

        reader = threading.Thread(target=read_pids, daemon=True, name="traffic-pids")
        reader.start()
        # A child that died closes the pipe, which ends the reader.
        _await(lambda: settled[0] >= len(shares) or not reader.is_alive())
        try:
            yield pids
        finally:
            os.close(stop_write)
            with os.fdopen(out_read, "rb") as stream:
                payload = stream.read()
            _, status = os.waitpid(child, 0)
            reader.join(timeout=5)
            if payload:
                found, counters = pickle.loads(payload)
                sink.extend(found)
                self.counters.merge(counters)
            else:  # the child died: its traffic is lost, which the report must say
                text = f"background traffic process ended without a report (status {status})"
                sink.append(Observed(None, text, action="connect", code_version=version, **where))


def _commit_without_flush(connection: Any) -> None:
    """Let a background session's commits return before their WAL reaches the disk
    (PostgreSQL's ``synchronous_commit = off``, for this session only).

    Traffic without pause commits hundreds of times a second, and a data migration that
    commits row by row queued each of its commits behind their flushes on the scratch
    server's disk, a cost of this harness's density, not of the deploy (paired runs in
    ``benchmarks/README.md``, session 12). What the rehearsal reads of traffic is unchanged:
    the same statements, locks, errors and rows. Its rows become visible and its locks free
    a flush earlier, and a crash of the server could lose its last commits, which on a
    scratch database lose nothing.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")


def _own_session(nice: int) -> None:
    """Lower this (forked) process's priority by ``nice`` in its own session, so that
    its CPU time is neither charged to its parent's scheduling group nor weighed as
    much as it. Each step is best effort: a platform without sessions or autogroups, or
    a kernel that refuses, leaves the process as it is."""
    with contextlib.suppress(OSError):
        os.setsid()
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
        group.write(str(nice))
    with contextlib.suppress(OSError):
        os.nice(nice)


def _await(done: Any, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Wait until ``done()`` is true, at most ``timeout`` seconds."""
    deadline = time.perf_counter() + timeout
    while not done() and time.perf_counter() < deadline:
        time.sleep(0.001)


def _handled_on_delete(
    model: type[models.Model], table: str | None, columns: frozenset[str]
) -> bool:
    """Whether ``model``'s code has a relation from ``columns`` of ``table`` to it whose
    ``on_delete`` the ORM carries out before the delete (anything but ``DO_NOTHING``)."""
    if table is None:
        return False
    target = model._meta.db_table
    return any(
        f.is_relation
        and f.column in columns
        and f.related_model is not None
        and f.related_model._meta.db_table == target
        and f.remote_field.on_delete is not models.DO_NOTHING
        for other in model._meta.apps.get_models(include_auto_created=True)
        if other._meta.db_table == table
        for f in other._meta.concrete_fields
    )


def _from_database(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is the database's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DatabaseError) or getattr(seen, "sqlstate", None):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _update(row: models.Model, alias: str) -> None:
    """Save ``row`` as an edit form does, as an UPDATE only. A row deleted since it was
    read (by the migration, or another session) is gone: ``save()`` would INSERT it again
    with the values it had, against whatever took its place, an error of the harness."""
    try:
        row.save(using=alias, force_update=True)
    except DatabaseError as exc:
        if exc.__cause__ is None:  # Django's "did not affect any rows", not the database's
            return
        raise


def session_shares(
    model_list: Sequence[type[models.Model]], hot: frozenset[str] | None = None
) -> list[list[type[models.Model]]]:
    """The models each background session cycles through, one list per session.

    ``hot``: the tables the migration works on, or None when it may touch any (code that cannot be
    read that far, SQL). With None, the models are dealt out evenly over at most ``MAX_THREADS``
    sessions. Otherwise every table of S0 still has traffic, but not the same: each model on a hot
    table, or with a foreign key to one (its writes lock the referenced row, so they wait behind a
    lock on the hot table), has ``HOT_SESSIONS`` sessions of its own, and the other models share
    ``COLD_SESSIONS`` sessions. A table the migration locks then sees writes without pause, instead
    of one visit in a cycle through the share of a session, and less of the server goes to traffic
    on tables nothing locks (``benchmarks/README.md``, session 9).
    """
    if hot is None:
        count = min(MAX_THREADS, len(model_list))
        return [list(model_list[i::count]) for i in range(count)]

    def touched(model: type[models.Model]) -> bool:
        if model._meta.db_table in hot:
            return True
        return any(
            f.is_relation and f.related_model is not None and f.related_model._meta.db_table in hot
            for f in model._meta.concrete_fields
        )

    near = [m for m in model_list if touched(m)]
    rest = [m for m in model_list if m not in near]
    cold = min(COLD_SESSIONS, len(rest))
    count = min(MAX_THREADS - cold, HOT_SESSIONS * len(near))
    if count >= len(near):
        shares = [[near[i % len(near)]] for i in range(count)]
    else:
        shares = [near[i::count] for i in range(count)]
    return shares + [rest[i::cold] for i in range(cold)]


def relations(model_list: Sequence[type[models.Model]]) -> frozenset[tuple[str, str]]:
    """(table, column) of every relation of ``model_list``."""
    return frozenset(
        (m._meta.db_table, f.column)
        for m in model_list
        for f in m._meta.concrete_fields
        if f.is_relation
    )


def backend_pid(connection: Any) -> int | None:
    """The PostgreSQL backend pid of an open Django connection (None elsewhere)."""
    if connection.vendor != "postgresql":
        return None
    raw = connection.connection
    info = getattr(raw, "info", None)
    pid = getattr(info, "backend_pid", None)
    return int(pid) if pid is not None else None
