"""Rehearse a deploy: walk ONE scratch database forward through S0 and the unit.

S0's migrations are applied without tracing and the tables topped up with synthetic rows.
Then each migration of the unit runs as ``migrate`` runs it (Django's executor, the same
schema editor, deferred SQL included), with its statements traced, after a top-up of the
tables of the state before it, while old-code traffic runs in threads on every table
(PostgreSQL; SQLite allows one writer at a time, so there it only runs between steps). After
each step, one round of old-code traffic checks that the release still serving can read and
write what the step left behind. Then the rollout: old and new code together. New code
keeps the rows it creates, and old code then deletes the rows they point at, as a release
that does not know a new foreign key does. In the default mode (each migration its own
deploy) that happens after every step, with the state after it as the new code; for a unit,
once, at its end, with the project's real models.

A migration that fails ends a unit's walk (production stops there too). In the default mode
the next migration is its own deploy, whose S0 has the failed one applied: the failed
migration's tables are emptied of the rows that broke it and it runs again, untraced, so
that the walk goes on and every migration is rehearsed (``Step.recovered`` says so). A
non-atomic migration that failed, or one whose tables are unknown, ends the walk.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.migrations.migration import Migration
from django.db.migrations.state import ProjectState

from django_rollout.db.adversary import Attack, Planted, attacks, plant, withdraw
from django_rollout.db.copy import RECORDER_TABLE, Source
from django_rollout.db.locks import Probe, Statement, Tracer
from django_rollout.db.scratch import Scratch, scratch_database
from django_rollout.db.seed import in_dependency_order, top_up
from django_rollout.db.state import server_version
from django_rollout.db.traffic import Observed, Traffic, backend_pid, observe, relations
from django_rollout.graph.code import models_named

Progress = Callable[[str], None]
# Row numbers of the adversary's rows: beyond the seeded ones, before traffic's.
ADVERSARY_ROW = 5_000_000


@dataclass
class Step:
    """One migration of the unit, as the scratch database ran it."""

    app_label: str
    migration: str
    status: str = "applied"  # or "failed"
    error: Observed | None = None
    statements: list[Statement] = field(default_factory=list)
    seeded: int = 0
    # Time inside ``apply_migration``, failed attempts included, tracing excluded: this
    # step's share of ``timings_s["migrate_s"]``.
    migrate_ms: float = 0.0
    # Tables each operation works on (by index), for matching findings; None: any table.
    tables: dict[int, frozenset[str] | None] = field(default_factory=dict)
    # After a failure in the default mode: how the walk went on (the tables emptied).
    recovered: str | None = None
    # With --adversarial: the rows written to break what the step adds, and the refusals.
    adversarial: Planted | None = None
    attacks: list[Attack] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app_label": self.app_label,
            "migration": self.migration,
            "status": self.status,
            "error": None if self.error is None else self.error.to_dict(),
            "seeded_rows": self.seeded,
            "migrate_ms": round(self.migrate_ms, 3),
            "recovered": self.recovered,
            "adversarial_rows": None if self.adversarial is None else self.adversarial.rows,
            "adversarial_refused": None if self.adversarial is None else self.adversarial.refused,
            "statements": [s.to_dict() for s in self.statements],
        }


@dataclass
class Rehearsal:
    """What the scratch database showed: the steps, traffic errors and where time went."""

    vendor: str
    scratch: str
    # The alias whose server held the scratch database, or the cluster started for it.
    server: str = "default"
    # --keep on an ephemeral cluster: the shell line that stops and removes it.
    left_running: str | None = None
    # The scratch server's own version ("15.20"): what was observed ran there, whatever
    # version the static prediction was made for (the configured server_version).
    server_version: str | None = None
    steps: list[Step] = field(default_factory=list)
    traffic_errors: list[Observed] = field(default_factory=list)
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped_models: dict[str, str] = field(default_factory=dict)
    # The walk ended at a failed step: the migrations after it were not rehearsed.
    stopped: bool = False
    # The unit is one deploy: one old release serves beside all of it (False: every
    # migration is a deploy of its own, with the release before it).
    one_release: bool = False

    @property
    def failed(self) -> Step | None:
        return next((s for s in self.steps if s.status == "failed"), None)


@dataclass(frozen=True)
class RehearseSettings:
    alias: str = "default"
    # Rows per table before each step: one number, or one per table name.
    rows: int | Mapping[str, int] = 1000
    keep: bool = False
    trace_locks: bool = True
    traffic: bool = True
    # Start the real application in a new process before each step and after the last.
    interleaved: bool = False
    adversarial: bool = False
    # A real database to start from: S0 is already applied there, with its rows.
    copy: Source | None = None
    # Production runs PostgreSQL: with no such server configured, start a local cluster.
    postgresql: bool = False


def rehearse(
    s0: Sequence[Migration],
    unit: Sequence[tuple[Migration, bool]],
    real_apps: frozenset[str],
    settings: RehearseSettings,
    each_on_its_own: bool,
    progress: Progress | None = None,
) -> Rehearsal:
    """Walk a scratch database forward through ``s0`` then ``unit``; see the module doc.

    Each migration of ``unit`` comes with whether it is observed: one that the
    configuration does not judge (a baseline, an excluded app) runs quietly, like S0.
    """
    say = progress or (lambda text: None)
    began = time.perf_counter()
    if settings.copy is not None:
        say(f"copying {settings.copy.label} ({settings.copy.method})")
    with scratch_database(
        settings.alias, keep=settings.keep, copy=settings.copy, postgresql=settings.postgresql
    ) as scratch:
        result = Rehearsal(
            vendor=scratch.vendor,
            scratch=scratch.name,
            server=scratch.server,
            left_running=scratch.left_running,
            one_release=not each_on_its_own,
        )
        if settings.copy is not None:
            result.timings["copy_s"] = time.perf_counter() - began
        try:
            _walk(scratch, s0, unit, real_apps, settings, each_on_its_own, result, say)
        finally:
            from django.db import connections

            connections[scratch.alias].close()
    result.timings["total_s"] = time.perf_counter() - began
    return result


def _walk(
    scratch: Scratch,
    s0: Sequence[Migration],
    unit: Sequence[tuple[Migration, bool]],
    real_apps: frozenset[str],
    settings: RehearseSettings,
    each_on_its_own: bool,
    result: Rehearsal,
    say: Progress,
) -> None:
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[scratch.alias]
    result.server_version = server_version(connection)
    executor = MigrationExecutor(connection)
    traffic = Traffic(scratch.alias)
    timings = result.timings
    for key in ("seed_s", "migrate_s", "traffic_s", "tracing_s", "s0_s"):
        timings[key] = 0.0
    state = ProjectState(real_apps=set(real_apps))
    old_models: list[type[models.Model]] | None = None
    # One deploy: the columns of S0, the only ones whose rows production already holds.
    s0_columns: frozenset[tuple[str, str, str]] | None = None
    # Per step, the tables its state names that the database lacked when it began.
    ghosts: dict[tuple[str, str], frozenset[str]] = {}
    applied: list[Migration] = []
    if settings.copy is not None:
        # The copy has S0 applied, with its real rows: only the state moves forward.
        with _timed(timings, "s0_s"):
            for migration in s0:
                state = migration.mutate_state(state, preserve=False)
                applied.append(migration)
        s0 = ()
    state.apps  # noqa: B018 - render once; the executor advances it in place

    for migration, observed in [*((m, False) for m in s0), *unit]:
        if not observed:
            say(f"S0 {migration.app_label}.{migration.name}")
            with _timed(timings, "s0_s"):
                state = executor.apply_migration(state, migration)
            applied.append(migration)
            continue
        present = _tables(connection)
        ghosts[(migration.app_label, migration.name)] = _state_tables(state) - present
        if each_on_its_own or old_models is None:
            old_models = _present(_frozen_models(state), present)
            if not each_on_its_own:
                s0_columns = _columns(old_models)
        step = Step(migration.app_label, migration.name)
        result.steps.append(step)
        step.tables = _operation_tables(migration, state)

        with _timed(timings, "seed_s"):
            seeded = top_up(state.apps, scratch.alias, settings.rows, present)
            if settings.adversarial:
                step.attacks = [a for a in attacks(migration, state) if _held(a, s0_columns)]
                step.adversarial = plant(step.attacks, state.apps, scratch.alias, ADVERSARY_ROW)
        step.seeded = sum(seeded.inserted.values())
        result.skipped_models.update(seeded.skipped)

        if settings.interleaved:
            with _timed(timings, "traffic_s"):
                _start_application(scratch, traffic, migration.app_label, migration.name, result)
        say(f"{migration.app_label}.{migration.name}")
        state = _run_step(
            executor, state, migration, step, traffic, old_models, settings, result, say
        )
        if step.status == "failed":
            recovered = (
                _recover(executor, applied, migration, step, real_apps) if each_on_its_own else None
            )
            if recovered is None:
                result.stopped = True
                break
            state = recovered
        applied.append(migration)
        with _timed(timings, "traffic_s"):
            new_models = (
                _present(_frozen_models(state), _tables(connection)) if each_on_its_own else []
            )
            _rollout(traffic, old_models, new_models, migration, result, step.attacks)
        if step.adversarial is not None:
            with _timed(timings, "seed_s"):
                withdraw(step.adversarial, state.apps, scratch.alias)

    if not result.stopped and result.steps:
        last = result.steps[-1]
        with _timed(timings, "traffic_s"):
            # A unit's rollout; each migration on its own had its own after its step.
            still_old = [] if each_on_its_own else old_models or []
            new_models = _present(_real_models(state), _tables(connection))
            _rollout(traffic, still_old, new_models, last, result)
            if settings.interleaved:  # every migration has run: the application must start
                _start_application(scratch, traffic, last.app_label, last.migration, result)
    # A state model whose table had gone before the step is no release's: an error on it
    # (reached through a cascade of the ORM, which follows the state's relations) is the
    # state's ghost, not the deploy's. A table the step itself drops or renames is not one.
    result.traffic_errors = [
        o
        for o in result.traffic_errors
        if o.sqlstate != "42P01"
        or o.table not in ghosts.get((o.app_label or "", o.migration or ""), frozenset())
    ]
    result.traffic = {
        "actions": dict(traffic.counters.actions),
        "errors": dict(traffic.counters.errors),
        "refused": dict(traffic.counters.refused),
    }


def _start_application(
    scratch: Scratch, traffic: Traffic, app_label: str, migration: str, result: Rehearsal
) -> None:
    """Start the project's application on the scratch database (see ``db.interleave``)."""
    from django.db import connections

    from django_rollout.db.interleave import start_application

    database = dict(connections.settings[scratch.alias])
    connections[scratch.alias].close()  # SQLite: the child process writes to the file too
    found, counters = start_application(database, app_label, migration, traffic.reserve())
    traffic.counters.merge(counters)
    for observed in found:
        _keep(result.traffic_errors, observed)


def _run_step(
    executor: Any,
    state: ProjectState,
    migration: Migration,
    step: Step,
    traffic: Traffic,
    old_models: Sequence[type[models.Model]],
    settings: RehearseSettings,
    result: Rehearsal,
    say: Progress,
) -> ProjectState:
    """Apply one migration with its statements traced and traffic running around it."""
    connection = executor.connection
    connection.ensure_connection()
    origin = time.perf_counter()
    tracer = Tracer(connection, origin, trace_locks=settings.trace_locks)
    background = settings.traffic and connection.vendor == "postgresql" and old_models
    sink: list[Observed] = []
    where = {"app_label": migration.app_label, "migration": migration.name}
    timings = result.timings
    clock = time.perf_counter()
    applying = [0.0]

    def apply() -> ProjectState:
        # The migrate part is the migration alone; starting and stopping the traffic
        # sessions around it is traffic's.
        began = time.perf_counter()
        try:
            return _apply(executor, state, migration, tracer, step)
        finally:
            applying[0] = time.perf_counter() - began

    try:
        with ExitStack() as around:
            pids = (
                around.enter_context(
                    traffic.background(old_models, "old", where, sink, _hot(step, migration, state))
                )
                if background
                else []
            )
            # The probe sees traffic wait, and the locks the session cannot read itself
            # (autocommit statements, a failed one): one second session per step.
            migrating = backend_pid(connection) if background or tracer.trace_locks else None
            if migrating:
                probe = Probe(connection.alias, migrating, tracer)
                probe.traffic_pids = pids
                around.enter_context(probe)
            state = apply()
    finally:
        step.migrate_ms = (applying[0] - tracer.tracing_s) * 1000
        timings["migrate_s"] += applying[0] - tracer.tracing_s
        timings["traffic_s"] += time.perf_counter() - clock - applying[0]
        timings["tracing_s"] += tracer.tracing_s
        step.statements = [s for s in tracer.statements if RECORDER_TABLE not in s.sql]
        for found in sink:
            _keep(result.traffic_errors, found)
    return state


def _rollout(
    traffic: Traffic,
    old_models: Sequence[type[models.Model]],
    new_models: Sequence[type[models.Model]],
    where: Migration | Step,
    result: Rehearsal,
    attacked: Sequence[Attack] = (),
) -> None:
    """One round of each live code version: new code first, keeping the rows it makes, then
    old code, which also deletes the rows new code's rows point at and, with
    ``--adversarial``, writes the rows that break what the step added."""
    app_label = where.app_label
    migration = where.name if isinstance(where, Migration) else where.migration
    known = relations(old_models)
    # Targets before the rows that point at them, so new rows can point at new rows.
    ordered = in_dependency_order(new_models)
    for found in traffic.round(ordered, "new", app_label, migration, keep=True, known=known):
        _keep(result.traffic_errors, found)
    for found in traffic.round(old_models, "old", app_label, migration):
        _keep(result.traffic_errors, found)
    traffic.forget_kept()  # background traffic must not race on these deletes
    by_key = {(m._meta.app_label, m._meta.model_name): m for m in old_models}
    for attack in attacked:
        model = by_key.get((attack.app_label, attack.model))
        if attack.old_writes and model is not None:
            for found in traffic.write(model, attack, "old", app_label, migration):
                _keep(result.traffic_errors, found)


def _recover(
    executor: Any,
    applied: Sequence[Migration],
    migration: Migration,
    step: Step,
    real_apps: frozenset[str],
) -> ProjectState | None:
    """Bring the scratch database to the state after ``migration``, which failed; see the
    module doc. Return that state, or None when the walk cannot go on."""
    connection = executor.connection
    if not migration.atomic or not connection.features.can_rollback_ddl:
        return None  # what a failed non-atomic migration left behind is unknown
    tables = {t for known in step.tables.values() if known for t in known}
    if step.error is not None and step.error.table:
        tables.add(step.error.table)
    tables &= _tables(connection)
    if not tables:
        return None

    # The state the migration started from (Migration.apply advanced the walked one in
    # place before it failed), rebuilt from what the scratch database has applied.
    def before() -> ProjectState:
        state = ProjectState(real_apps=set(real_apps))
        for done in applied:
            for operation in done.operations:
                operation.state_forwards(done.app_label, state)
        return state

    how = "applied again, untraced"
    try:
        _empty(connection, before(), sorted(tables))
        state = executor.apply_migration(before(), migration)
    except Exception:
        # Rows its own data step writes, then a schema change of the same table in one
        # transaction (M405), fail on an empty table too: each operation on its own then.
        loose = copy.copy(migration)
        loose.atomic = False
        try:
            state = executor.apply_migration(before(), loose)
        except Exception:  # broken by something other than its rows: the walk ends here
            return None
        how += " with each operation committing on its own"
    step.recovered = (
        f"{how}, after emptying "
        + ", ".join(f"`{t}`" for t in sorted(tables))
        + ": the next migration is its own deploy"
    )
    return state


def _empty(connection: Any, state: ProjectState, tables: Sequence[str]) -> None:
    """Delete every row of ``tables`` and of the rows that reference them."""
    if connection.vendor == "postgresql":
        quoted = ", ".join(connection.ops.quote_name(t) for t in tables)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {quoted} CASCADE")
        return
    # Elsewhere the historical models' collector follows the relations (in Python).
    for model in _models(state.apps):
        if model._meta.db_table in tables:
            model._base_manager.using(connection.alias).all().delete()


def _apply(
    executor: Any, state: ProjectState, migration: Migration, tracer: Tracer, step: Step
) -> ProjectState:
    connection = executor.connection
    try:
        with connection.execute_wrapper(tracer):
            state = executor.apply_migration(state, migration)
    except Exception as exc:  # the migration failed: the main finding, not bad input
        failed = next((s for s in reversed(tracer.statements) if s.failed), None)
        step.status = "failed"
        step.error = observe(
            exc,
            app_label=migration.app_label,
            migration=migration.name,
            action="migrate",
            statement=failed.sql if failed else None,
        )
        # The scratch state is unknown after a failed non-atomic migration; the walk stops.
    finally:
        tracer.released()
    return state


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the time the block takes to ``timings[key]``."""
    began = time.perf_counter()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - began


def _keep(errors: list[Observed], found: Observed) -> None:
    """Keep the first error of each kind (step, code version, SQLSTATE, table, action)."""
    if all(_kind(e) != _kind(found) for e in errors):
        errors.append(found)


def _kind(found: Observed) -> tuple[str | None, ...]:
    return (
        found.app_label,
        found.migration,
        found.code_version,
        found.sqlstate,
        found.table,
        found.action,
    )


def _models(apps: Any) -> list[type[models.Model]]:
    return [
        m
        for m in apps.get_models()
        if m._meta.managed and not m._meta.proxy and not m._meta.swapped
    ]


def _frozen_models(state: ProjectState) -> list[type[models.Model]]:
    """The models of ``state`` as they are now, in a registry of their own.

    A clone of a rendered state shares its model classes, and those follow the executor's
    re-rendering of relations: old code must keep the classes of its own release.
    """
    frozen = ProjectState(
        models={key: model.clone() for key, model in state.models.items()},
        real_apps=set(state.real_apps),
    )
    return _models(frozen.apps)


def _columns(found: Sequence[type[models.Model]]) -> frozenset[tuple[str, str, str]]:
    """(app label, model name, attname) of every concrete field of ``found``."""
    return frozenset(
        (m._meta.app_label, m._meta.model_name or "", f.attname)
        for m in found
        for f in m._meta.concrete_fields
    )


def _held(attack: Attack, s0_columns: frozenset[tuple[str, str, str]] | None) -> bool:
    """Whether production's rows can hold what ``attack`` writes. Within one deploy a column
    the unit added holds only what the unit's migrations put there and what the old release
    writes, which its traffic does for real: breaking rows planted there through a state no
    release runs are the harness's, not production's (django-oscar's ``order.0016``-``0018``
    adds a column, backfills it, then makes it NOT NULL). Every migration on its own: the
    release before it ran with that state, so any of its columns may."""
    if s0_columns is None:
        return True
    names = set(attack.repeat).union(*(row.keys() for row in attack.values))
    return all((attack.app_label, attack.model, name) in s0_columns for name in names)


def _state_tables(state: ProjectState) -> frozenset[str]:
    """The tables the models of ``state`` name."""
    return frozenset(m._meta.db_table for m in _models(state.apps))


def _tables(connection: Any) -> frozenset[str]:
    """The tables (and views) the database has now."""
    with connection.cursor() as cursor:
        return frozenset(connection.introspection.table_names(cursor, include_views=True))


def _present(
    found: Sequence[type[models.Model]], tables: frozenset[str]
) -> list[type[models.Model]]:
    """The models whose table the database has: traffic on a model the migration state
    keeps for a table that moved on (``seed.NO_TABLE``) would be no release's traffic."""
    return [m for m in found if m._meta.db_table in tables]


def _real_models(state: ProjectState) -> list[type[models.Model]]:
    """The project's real models whose tables the walked state has."""
    from django.apps import apps

    tables = {m._meta.db_table for m in _models(state.apps)}
    return [m for m in _models(apps) if m._meta.db_table in tables]


def _fields_of(op: Any, app_label: str, state: ProjectState) -> list[Any]:
    """The fields an operation adds, alters or drops (a dropped one as the state had it)."""
    from django.db import migrations as ops

    if isinstance(op, ops.CreateModel):
        return [f for _, f in op.fields]
    if getattr(op, "field", None) is not None:  # RemoveField has one, None
        return [op.field]
    name = getattr(op, "model_name", None) or getattr(op, "name", None)
    model = state.models.get((app_label, str(name).lower())) if name else None
    if model is None:
        return []
    if isinstance(op, ops.DeleteModel):
        return list(model.fields.values())
    if isinstance(op, ops.RemoveField):
        return [f for name, f in model.fields.items() if name == op.name]
    return []


def _hot(step: Step, migration: Migration, state: ProjectState) -> frozenset[str] | None:
    """The tables the background traffic crowds while ``migration`` applies: those its
    operations work on and, for a ``RunPython``, those its code names (``models_named``)
    with the tables their foreign keys point at. None when an operation runs code that
    cannot be read that far, or SQL: any table."""
    hot: set[str] = set()
    for i, tables in step.tables.items():
        if tables is None:
            tables = _code_tables(migration.operations[i], migration.app_label, state)
            if tables is None:
                return None
        hot |= tables
    return frozenset(hot)


def _code_tables(op: Any, app_label: str, state: ProjectState) -> frozenset[str] | None:
    from django.db import migrations as ops

    if not isinstance(op, ops.RunPython):
        return None
    named = models_named(op.code, app_label, state.models)
    if named is None:
        return None
    known = [key for key in named if key in state.models]
    fields = [f for key in known for f in state.models[key].fields.values()]
    return frozenset({_db_table(state, key) for key in known} | _targets(fields, state))


def _db_table(state: ProjectState, key: tuple[str, str]) -> str:
    model = state.models.get(key)
    table = model.options.get("db_table") if model is not None else None
    return str(table or f"{key[0]}_{key[1]}")


def _targets(
    fields: Sequence[Any], state: ProjectState, created: Mapping[tuple[str, str], str] | None = None
) -> set[str]:
    """The tables the foreign keys among ``fields`` point at (in ``state``, or ``created``
    by the same migration)."""
    found: set[str] = set()
    for field_obj in fields:
        remote = getattr(field_obj, "remote_field", None)
        if remote is not None and isinstance(remote.model, str) and "." in remote.model:
            app, model = remote.model.split(".", 1)
            key = (app, model.lower())
            if created and key in created:
                found.add(created[key])
            elif key in state.models:
                found.add(_db_table(state, key))
    return found


def _operation_tables(
    migration: Migration, state: ProjectState
) -> dict[int, frozenset[str] | None]:
    """Return, per operation, the tables it works on (None for code: any table)."""
    from django.db import migrations as ops

    out: dict[int, frozenset[str] | None] = {}

    # Models the migration creates are not in ``state`` yet: their tables, as created.
    created: dict[tuple[str, str], str] = {}

    def table_of(name: str | None) -> str | None:
        if not name:
            return None
        key = (migration.app_label, name.lower())
        return created.get(key) or _db_table(state, key)

    for i, op in enumerate(migration.operations):
        if isinstance(op, ops.CreateModel):
            key = (migration.app_label, op.name_lower)
            created[key] = str(op.options.get("db_table") or f"{key[0]}_{key[1]}")
        if isinstance(op, ops.RunPython | ops.RunSQL | ops.SeparateDatabaseAndState):
            out[i] = None
            continue
        names: set[str | None] = set()
        names.add(getattr(op, "model_name", None) or getattr(op, "name", None))
        if isinstance(op, ops.RenameModel):
            names |= {op.old_name, op.new_name}
        found = {t for t in (table_of(n) for n in names) if t}
        # The tables its foreign keys point at: adding or dropping one locks them too.
        found |= _targets(_fields_of(op, migration.app_label, state), state, created)
        out[i] = frozenset(found) if found else None
    return out
