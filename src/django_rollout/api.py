"""The public API: every face (console script, manage.py, system checks) calls these.

Functions return plain dataclasses and never print. Django must be set up before they are
called (``django_rollout.db.startup.setup_django`` does it and captures start-up queries).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from django.db.migrations import RunPython
from django.db.migrations.migration import Migration

from django_rollout.conf import Config, Suppression, load_config, parse_server_version
from django_rollout.errors import ConfigurationError, DeployedStateError
from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph import deployed as s0
from django_rollout.graph.context import ProjectContext, StartupQuery, startup_tables
from django_rollout.graph.loader import Graph, load_graph, migration_dirs
from django_rollout.graph.source import operation_line, relative
from django_rollout.graph.verdicts import Sources, Verdicts, salt
from django_rollout.graph.walk import Walker, WalkSettings
from django_rollout.rules.base import Rule
from django_rollout.rules.registry import all_rules

MigrationKey = tuple[str, str]
SCHEMA_VERSION = 1
DEFAULT_PG_VERSION: tuple[int, ...] = (17,)
UNUSED_SUPPRESSION = "M408"


@dataclass(frozen=True)
class CheckOptions:
    """What to judge: S0 source, report filters, and extras. Mirrors the CLI flags."""

    since: str | None = None
    database: str | None = None
    applied_from: str | None = None
    app_label: str | None = None
    migration: str | None = None
    sql: bool = False
    vendor: str | None = None
    server_version: tuple[int, ...] | None = None
    fail_on: Severity | None = None
    startup_queries: Sequence[StartupQuery] = ()
    startup_error: str | None = None
    # Where the default run keeps each migration's findings between runs (None: judge
    # everything); see graph/verdicts.py for what the key covers.
    cache_dir: str | None = None


@dataclass(frozen=True)
class SuppressedFinding:
    finding: Finding
    reason: str
    source: str


@dataclass(frozen=True)
class MigrationSQL:
    app_label: str
    migration: str
    statements: tuple[Any, ...]
    error: str | None


@dataclass(frozen=True)
class Report:
    """What every command returns: the envelope of ARCHITECTURE.md plus its own keys."""

    command: str
    s0_source: str
    unit: tuple[MigrationKey, ...]
    findings: tuple[Finding, ...]
    fail_on: Severity = Severity.ERROR
    vendor: str = "postgresql"
    server_version: tuple[int, ...] = DEFAULT_PG_VERSION
    suppressed: tuple[SuppressedFinding, ...] = ()
    sql: tuple[MigrationSQL, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # (kept from the cache, judged afresh) in a default run with a cache; not in the JSON,
    # so that a warm run's report is byte-equal to a cold one's.
    cache: tuple[int, int] | None = None

    @property
    def exit_status(self) -> int:
        """Return 1 when a finding is at or above ``fail_on``, else 0."""
        return 1 if any(f.severity >= self.fail_on for f in self.findings) else 0

    def counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in Severity}
        for f in self.findings:
            out[str(f.severity)] += 1
        return out


def _vendor_of(settings: Any, override: str | None, config: Config) -> str:
    if override:
        return override
    if config.vendor:
        return config.vendor
    engine = str(settings.DATABASES.get("default", {}).get("ENGINE", ""))
    if "sqlite" in engine:
        return "sqlite"
    # PostgreSQL semantics are the reference; other engines are judged by them for now.
    return "postgresql"


def _server_version(
    options: CheckOptions, config: Config, deployed: s0.Deployed, vendor: str
) -> tuple[int, ...]:
    if options.server_version:
        return options.server_version
    if config.server_version:
        return config.server_version
    version = str(deployed.server.get("version") or "")
    if vendor == "postgresql" and deployed.server.get("vendor") == "postgresql" and version:
        try:
            return tuple(int(p) for p in version.split(".")[:2])
        except ValueError:
            pass
    if vendor == "postgresql":
        return DEFAULT_PG_VERSION
    import sqlite3

    return tuple(int(p) for p in sqlite3.sqlite_version.split("."))


def _check_supported(version: tuple[int, ...], deployed: s0.Deployed) -> None:
    """Refuse a PostgreSQL version the installed Django cannot run on, before any rule."""
    import django

    from django_rollout.graph.offline import oldest_supported_postgresql

    oldest = oldest_supported_postgresql()
    if version[: len(oldest)] < oldest[: len(version)]:
        where = "the deployed database runs" if deployed.server.get("version") else "judging for"
        raise ConfigurationError(
            f"{where} PostgreSQL {'.'.join(map(str, version))}, but Django {django.__version__}"
            f" supports PostgreSQL {'.'.join(map(str, oldest))} or later: pin --server-version"
            " or install the Django the deployed release runs"
        )


def _resolve_deployed(options: CheckOptions) -> s0.Deployed:
    chosen = [f for f in (options.since, options.database, options.applied_from) if f]
    if len(chosen) > 1:
        raise ConfigurationError("use only one of --since, --database and --applied-from")
    if options.since:
        from django.apps import apps

        labels = [a.label for a in apps.get_app_configs()]
        return s0.from_git(options.since, migration_dirs(labels))
    if options.database:
        from django_rollout.db.state import read_deployed

        return read_deployed(options.database)
    if options.applied_from:
        return s0.from_snapshot(options.applied_from)
    return s0.EACH


def _baseline(graph: Graph, config: Config) -> set[MigrationKey]:
    """Return the migrations at or before each app's ``start_after`` (not judged)."""
    out: set[MigrationKey] = set()
    for app_label, name in config.start_after.items():
        key = (app_label, name)
        if key not in graph.nodes:
            raise ConfigurationError(
                f"start_after: {app_label}.{name} is not a migration of this project"
            )
        out.update(k for k in graph.loader.graph.forwards_plan(key) if k[0] == app_label)
    return out


def _check_filters(graph: Graph, options: CheckOptions) -> tuple[str | None, str | None]:
    from django.apps import apps

    if options.app_label is None:
        return None, None
    try:
        apps.get_app_config(options.app_label)
    except LookupError:
        raise ConfigurationError(f"unknown app label {options.app_label!r}") from None
    if options.migration is None:
        return options.app_label, None
    try:
        migration = graph.loader.get_migration_by_prefix(options.app_label, options.migration)
    except KeyError:
        raise ConfigurationError(
            f"{options.app_label} has no migration matching {options.migration!r}"
        ) from None
    except Exception as exc:  # AmbiguityError
        raise ConfigurationError(str(exc)) from None
    return options.app_label, migration.name


def _split(graph: Graph, deployed: s0.Deployed) -> tuple[list[Migration], list[Migration]]:
    """Split the plan into S0 and the unit; refuse an S0 that cannot be what is deployed."""
    applied = deployed.applied or frozenset()

    def is_applied(m: Migration) -> bool:
        if (m.app_label, m.name) in applied:
            return True
        return bool(m.replaces) and all(tuple(r) in applied for r in m.replaces)

    done = [m for m in graph.plan if is_applied(m)]
    unit = [m for m in graph.plan if not is_applied(m)]
    if graph.plan and not done:
        raise DeployedStateError(
            f"S0 ({deployed.source}) has no migration of this project applied: every table would"
            " count as new; point it at the deployed state"
        )
    done_keys = {(m.app_label, m.name) for m in done}
    for m in done:
        for dep in m.dependencies:
            key = tuple(dep)
            if key in graph.nodes and key not in done_keys and key[0] != "__setting__":
                raise DeployedStateError(
                    f"S0 ({deployed.source}) is inconsistent: {m.app_label}.{m.name} is applied"
                    f" but its dependency {key[0]}.{key[1]} is not (run `django-rollout doctor`)"
                )
    return done, unit


def check(options: CheckOptions | None = None, rules: Sequence[type[Rule]] | None = None) -> Report:
    """Judge the deploy unit with the rule catalogue and return the report."""
    options = options or CheckOptions()
    config, deployed, graph = _prepare(options)
    return _judge(options, rules, config, deployed, graph)


def _prepare(options: CheckOptions) -> tuple[Config, s0.Deployed, Graph]:
    """Read the configuration, resolve S0 (git, a database, a snapshot) and load the graph:
    once per command, shared by check and rehearse."""
    config = load_config(_settings())
    deployed = _resolve_deployed(options)
    return config, deployed, load_graph(deployed.applied or ())


def _judge(
    options: CheckOptions,
    rules: Sequence[type[Rule]] | None,
    config: Config,
    deployed: s0.Deployed,
    graph: Graph,
) -> Report:
    settings = _settings()
    app_filter, migration_filter = _check_filters(graph, options)
    baseline = _baseline(graph, config)
    vendor = _vendor_of(settings, options.vendor, config)
    version = _server_version(options, config, deployed, vendor)
    if vendor == "postgresql":
        _check_supported(version, deployed)

    def judged(key: MigrationKey) -> bool:
        if key[0] in config.exclude_apps or key in baseline:
            return False
        if app_filter is not None and key[0] != app_filter:
            return False
        return migration_filter is None or key[1] == migration_filter

    instances = [r() for r in (rules if rules is not None else all_rules())]
    real_apps = frozenset(graph.loader.unmigrated_apps)
    cache: tuple[int, int] | None = None
    places: dict[MigrationKey, tuple[str | None, str | None]] = {}
    walker = Walker(
        instances,
        WalkSettings(
            config,
            vendor,
            version,
            deployed.row_counts,
            real_apps,
            startup_tables(options.startup_queries),
        ),
        judged,
    )
    if deployed.each_on_its_own:
        unit_migrations = [m for m in graph.plan if judged((m.app_label, m.name))]
        verdicts = _verdicts(options, settings, instances, walker.settings, graph, places)
        findings = walker.each_on_its_own(graph.plan, verdicts)
        if verdicts is not None:
            verdicts.save()
            cache = (verdicts.hits, verdicts.misses)
    else:
        done, unit_migrations = _split(graph, deployed)
        findings = walker.as_one_unit(done, unit_migrations)

    pctx = ProjectContext(
        loader=graph.loader,
        judged_apps=lambda label: (
            label not in config.exclude_apps and (app_filter is None or label == app_filter)
        ),
        startup_queries=options.startup_queries,
        startup_error=options.startup_error,
        extra={"graph": graph, "unit": unit_migrations},
    )
    for rule in instances:
        findings.extend(rule.check_project(pctx))

    findings = [_locate(f, graph, places) for f in findings]
    kept, suppressed = _suppress(findings, graph, config, instances, unit_migrations)
    kept = [_override(f, config) for f in kept]
    if app_filter is not None:
        kept = [f for f in kept if f.app_label in (None, app_filter)]
    sql = _collect_sql(graph, deployed, unit_migrations, vendor, version) if options.sql else None
    if sql is not None:
        kept.extend(_sql_gaps(sql, graph))
    return Report(
        command="check",
        s0_source=deployed.source,
        unit=tuple((m.app_label, m.name) for m in unit_migrations),
        findings=tuple(sorted(kept, key=lambda f: f.sort_key)),
        fail_on=options.fail_on or config.fail_on,
        vendor=vendor,
        server_version=version,
        suppressed=tuple(suppressed),
        sql=sql,
        extra={"row_counts": deployed.row_counts is not None},
        cache=cache,
    )


def _verdicts(
    options: CheckOptions,
    settings: Any,
    rules: Sequence[Rule],
    walk: WalkSettings,
    graph: Graph,
    places: dict[MigrationKey, tuple[str | None, str | None]],
) -> Verdicts | None:
    """The findings kept by earlier default runs, under a salt of all that decides them."""
    if options.cache_dir is None:
        return None
    sources = Sources()
    parts: tuple[object, ...] = (walk.vendor, walk.server_version, walk.config)
    parts += (walk.row_counts, walk.real_apps, walk.startup_tables, os.getcwd())
    return Verdicts(
        Path(options.cache_dir),
        salt(settings, rules, parts, sources),
        sources,
        lambda finding: _locate(finding, graph, places),
        graph.path_of,
    )


def _locate(
    finding: Finding,
    graph: Graph,
    places: dict[MigrationKey, tuple[str | None, str | None]] | None = None,
) -> Finding:
    """Give a finding its file and line. ``places`` caches each migration's absolute and
    relative path across the findings of one run (``relpath`` is not free, 4,645 times)."""
    if finding.location.path is not None or finding.app_label is None or finding.migration is None:
        return finding
    key = (finding.app_label, finding.migration)
    migration = graph.nodes.get(key)
    if migration is None:
        return finding
    place = places.get(key) if places is not None else None
    if place is None:
        path = graph.path_of(migration)
        place = (path, relative(path))
        if places is not None:
            places[key] = place
    path, shown = place
    nesting = dict(finding.details).get("nesting", ())
    line = (
        operation_line(path, finding.operation_index, nesting, migration.operations)
        if path
        else None
    )
    return replace(finding, location=Location(shown, line or (1 if path else None)))


def _migration_suppressions(graph: Graph, finding: Finding) -> Iterable[Suppression]:
    if finding.app_label is None or finding.migration is None:
        return ()
    migration = graph.nodes.get((finding.app_label, finding.migration))
    ignore = getattr(migration, "rollout_ignore", None)
    if not isinstance(ignore, dict):
        return ()
    return tuple(
        Suppression(
            rule=str(rule).upper(),
            reason=str(reason),
            app_label=finding.app_label,
            migration=finding.migration,
            source=f"{finding.app_label}.{finding.migration}.rollout_ignore",
        )
        for rule, reason in ignore.items()
    )


def _suppress(
    findings: list[Finding],
    graph: Graph,
    config: Config,
    rules: Sequence[Rule],
    judged: Sequence[Migration],
) -> tuple[list[Finding], list[SuppressedFinding]]:
    """Drop suppressed findings, keeping who suppressed them and why; report unused ones."""
    kept: list[Finding] = []
    suppressed: list[SuppressedFinding] = []
    used: set[tuple[str, str | None, str | None, str]] = set()
    for finding in findings:
        match = None
        for sup in (*_migration_suppressions(graph, finding), *config.suppressions):
            if sup.matches(finding.rule, finding.app_label, finding.migration):
                match = sup
                break
        if match is None:
            kept.append(finding)
            continue
        used.add((match.rule, match.app_label, match.migration, match.source))
        suppressed.append(SuppressedFinding(finding, match.reason, match.source))
    kept.extend(_unused_suppressions(graph, config, used, rules, judged))
    return kept, suppressed


def _unused_suppressions(
    graph: Graph,
    config: Config,
    used: set[tuple[str, str | None, str | None, str]],
    rules: Sequence[Rule],
    judged: Sequence[Migration],
) -> list[Finding]:
    """Report suppressions that matched nothing: in config, and on judged migrations."""
    from django_rollout.rules.registry import rule_by_id

    reporter = rule_by_id(UNUSED_SUPPRESSION)
    if reporter is None or not any(isinstance(r, reporter) for r in rules):
        return []
    checker = reporter()
    candidates: list[Suppression] = list(config.suppressions)
    for migration in judged:
        probe = Finding(
            rule=None,
            name="",
            severity=Severity.INFO,
            message="",
            help="",
            app_label=migration.app_label,
            migration=migration.name,
        )
        candidates.extend(_migration_suppressions(graph, probe))
    out: list[Finding] = []
    for sup in candidates:
        if (sup.rule, sup.app_label, sup.migration, sup.source) in used:
            continue
        finding = checker.finding(
            suppressed_rule=sup.rule,
            source=sup.source,
            reason=sup.reason,
            app_label=sup.app_label if sup.migration else None,
            migration=sup.migration,
        )
        out.append(_locate(finding, graph))
    return out


def _override(finding: Finding, config: Config) -> Finding:
    if finding.rule and finding.rule in config.severity_overrides:
        return finding.with_severity(config.severity_overrides[finding.rule])
    return finding


def _collect_sql(
    graph: Graph,
    deployed: s0.Deployed,
    unit: Sequence[Migration],
    vendor: str,
    version: tuple[int, ...],
) -> tuple[MigrationSQL, ...]:
    """Collect the SQL Django will run for the unit, offline, in Django's order."""
    from django.db.migrations.state import ProjectState

    from django_rollout.graph.sql import collect_migration_sql

    wanted = {(m.app_label, m.name) for m in unit}
    real_apps = set(graph.loader.unmigrated_apps)
    order = (
        graph.plan
        if deployed.each_on_its_own
        else [
            *[m for m in graph.plan if (m.app_label, m.name) not in wanted],
            *unit,
        ]
    )
    # One state carried forward, rendered once and advanced in place, as Django's
    # collect_sql does: cloning and re-rendering it for every migration is quadratic.
    state = ProjectState(real_apps=real_apps)
    out: list[MigrationSQL] = []
    for i, migration in enumerate(order):
        if (migration.app_label, migration.name) not in wanted:
            migration.mutate_state(state, preserve=False)
            continue
        collected = collect_migration_sql(
            migration, state, vendor=vendor, server_version=version, in_place=True
        )
        out.append(
            MigrationSQL(migration.app_label, migration.name, collected.statements, collected.error)
        )
        if collected.error is not None or _skips_state(migration):
            # The state stopped part-way, or Django's collect_sql left an operation's
            # state change out: rebuild it from the plan, unrendered (rare).
            state = ProjectState(real_apps=real_apps)
            for done in order[: i + 1]:
                done.mutate_state(state, preserve=False)
    return tuple(out)


def _skips_state(migration: Migration) -> bool:
    """Return True when collecting SQL skipped an operation that changes the state: one
    that does not reduce to SQL, other than RunPython (whose state change is none)."""
    return any(
        not op.reduces_to_sql and not isinstance(op, RunPython) for op in migration.operations
    )


def _sql_gaps(sql: Sequence[MigrationSQL], graph: Graph) -> list[Finding]:
    from django_rollout.rules.registry import rule_by_id

    reporter = rule_by_id("M409")
    if reporter is None:
        return []
    checker = reporter()
    return [
        _locate(
            checker.finding(app_label=item.app_label, migration=item.migration, error=item.error),
            graph,
        )
        for item in sql
        if item.error
    ]


def report_json(report: Report, *, lazy: bool = False) -> dict[str, Any]:
    """Return the report as the JSON envelope of ARCHITECTURE.md. With ``lazy``, the
    findings are an iterator, built one at a time as they are written."""
    findings = (f.to_dict() for f in report.findings)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": report.command,
        "s0_source": report.s0_source,
        "unit": [list(k) for k in report.unit],
        "findings": findings if lazy else list(findings),
        "fail_on": str(report.fail_on),
        "exit_status": report.exit_status,
        "vendor": report.vendor,
        "server_version": ".".join(str(p) for p in report.server_version),
        "counts": report.counts(),
        "suppressed": [
            {**s.finding.to_dict(), "reason": s.reason, "suppressed_by": s.source}
            for s in report.suppressed
        ],
    }
    if report.sql is not None:
        doc["sql"] = [
            {
                "app_label": m.app_label,
                "migration": m.migration,
                "error": m.error,
                "statements": [
                    {"sql": s.sql, "operation_index": s.operation_index, "deferred": s.deferred}
                    for s in m.statements
                ],
            }
            for m in report.sql
        ]
    doc.update(report.extra)
    return doc


def write_json(report: Report, out: IO[str]) -> None:
    """Write the JSON report: one top-level key per line and one list element (a finding)
    per line, so it reads and greps well. Written by the C encoder (``indent=`` would switch
    to the pure-Python one, a second on thousands of findings), a finding at a time."""
    encode = json.JSONEncoder(default=str, separators=(", ", ": ")).encode
    out.write("{")
    for n, (key, value) in enumerate(report_json(report, lazy=True).items()):
        out.write(("," if n else "") + f"\n  {encode(key)}: ")
        if isinstance(value, list | Iterator):
            first = True
            for item in value:
                out.write(("[\n    " if first else ",\n    ") + encode(item))
                first = False
            out.write("[]" if first else "\n  ]")
        else:
            out.write(encode(value))
    out.write("\n}")


def dumps(report: Report) -> str:
    buffer = io.StringIO()
    write_json(report, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class RehearseOptions:
    """What to rehearse and where: the check's S0 flags plus the scratch database's."""

    check: CheckOptions = field(default_factory=CheckOptions)
    alias: str = "default"
    # Synthetic rows per table before each step; None: 1000, or 0 on a copied database,
    # or, with S0's row counts (--database, --applied-from), production's scaled to max_rows.
    rows: int | None = None
    max_rows: int = 100_000
    keep: bool = False
    trace_locks: bool = True
    traffic: bool = True
    # Also start the real application in a new process between migrations.
    interleaved: bool = False
    adversarial: bool = False
    # A database (alias or URL) to copy and rehearse on: S0 is what it has applied.
    source: str | None = None
    # Copy it with CREATE DATABASE ... TEMPLATE on its own server instead of pg_dump.
    template: bool = False
    # For a PostgreSQL production with no PostgreSQL server configured, start a local
    # cluster; False: rehearse on SQLite (whose verdict is never "safe" for it).
    cluster: bool = True


def rehearse(options: RehearseOptions, progress: Any = None) -> Report:
    """Replay the deploy unit on a scratch database with traffic; return the report.

    The static findings of ``check`` for the same S0 are matched with what the database
    showed: ``confirmed`` when an observed error has one of the rule's SQLSTATEs on
    one of the operation's tables, or (lock rules) when traffic waited behind a lock of one
    of them. An error that no finding predicted is reported with ``rule: null``.
    """
    from django_rollout.db.copy import resolve
    from django_rollout.db.rehearse import RehearseSettings
    from django_rollout.db.rehearse import rehearse as walk_scratch

    copy = None
    if options.source:
        given = options.check
        if given.since or given.applied_from or given.database not in (None, options.source):
            raise ConfigurationError(
                "--from-database is S0 itself: drop --since, --database and --applied-from"
            )
        copy = resolve(options.source, template=options.template)
        options = replace(options, check=replace(given, database=options.source))
    elif options.template:
        raise ConfigurationError("--template copies the database of --from-database: name one")
    if options.interleaved:
        from django_rollout.db.interleave import settings_module

        settings_module()  # refuse settings configured in code before anything runs
    config, deployed, graph = _prepare(options.check)
    rows: int | dict[str, int] = options.rows if options.rows is not None else 1000
    scaled = None
    if copy is not None and options.rows is None:
        rows = 0  # the copy's own rows
    elif options.rows is None and deployed.row_counts:
        from django_rollout.db.seed import scaled_rows

        scaled = scaled_rows(deployed.row_counts, options.max_rows)
        rows = scaled.rows
    static = _judge(options.check, None, config, deployed, graph)
    production = _vendor_of(_settings(), options.check.vendor, config)
    baseline = _baseline(graph, config)
    if deployed.each_on_its_own:
        done: list[Migration] = []
        unit = list(graph.plan)
    else:
        done, unit = _split(graph, deployed)

    def observed(m: Migration) -> bool:
        key = (m.app_label, m.name)
        return key not in baseline and m.app_label not in config.exclude_apps

    rehearsal = walk_scratch(
        done,
        [(m, observed(m)) for m in unit],
        frozenset(graph.loader.unmigrated_apps),
        RehearseSettings(
            alias=options.alias,
            rows=rows,
            keep=options.keep,
            trace_locks=options.trace_locks,
            traffic=options.traffic,
            interleaved=options.interleaved,
            adversarial=options.adversarial,
            copy=copy,
            postgresql=options.cluster and production == "postgresql",
        ),
        each_on_its_own=deployed.each_on_its_own,
        progress=progress,
    )
    from django_rollout.db.confirm import confirm, verdict

    places: dict[MigrationKey, tuple[str | None, str | None]] = {}
    findings = [_locate(f, graph, places) for f in confirm(static.findings, rehearsal)]
    return Report(
        command="rehearse",
        s0_source=deployed.source,
        unit=tuple((m.app_label, m.name) for m in unit if observed(m)),
        findings=tuple(sorted(findings, key=lambda f: f.sort_key)),
        fail_on=static.fail_on,
        vendor=static.vendor,
        server_version=static.server_version,
        suppressed=static.suppressed,
        extra={
            "verdict": verdict(findings, rehearsal, production),
            "scratch": {
                "vendor": rehearsal.vendor,
                "name": rehearsal.scratch,
                "server": rehearsal.server,
                "server_version": rehearsal.server_version,
                "left_running": rehearsal.left_running,
                "copied_from": None if copy is None else copy.label,
                "copy_method": None if copy is None else copy.method,
            },
            "steps": [s.to_dict() for s in rehearsal.steps],
            "traffic": rehearsal.traffic,
            "timings_s": {k: round(v, 3) for k, v in rehearsal.timings.items()},
            "unseeded_tables": rehearsal.skipped_models,
            "rows": (
                {"per_table": rows}
                if scaled is None
                else {
                    "per_table": "production's, scaled",
                    "scale": scaled.scale,
                    "largest_in_production": scaled.largest,
                }
            ),
        },
    )


def _settings() -> Any:
    from django.conf import settings

    return settings


@dataclass(frozen=True)
class DoctorOptions:
    """Which database to examine, and what to do about it. Mirrors ``doctor``'s flags."""

    database: str = "default"
    # Only compare the records with the code (no schema read): is the code older?
    code_age: bool = False
    # Carry the repair out (the face asks first on a terminal), backing rows up to a file.
    apply: bool = False
    backup: str | None = None
    fail_on: Severity | None = None
    app_label: str | None = None


def doctor(options: DoctorOptions | None = None) -> Report:
    """Compare ``django_migrations`` with the real schema and the code; return the repair.

    With ``apply``, carry the repair out and return the diagnosis made afterwards, with
    ``extra["applied"]`` saying what was done and where the backup is.
    """
    import time

    from django_rollout.db import history as h
    from django_rollout.db.repair import apply as apply_repair
    from django_rollout.db.repair import default_backup_path
    from django_rollout.graph.offline import shared_offline_connection

    options = options or DoctorOptions()
    if options.apply and "://" in options.database:
        raise ConfigurationError("--apply needs a database alias from settings, not a URL")
    began = time.perf_counter()
    config = load_config(_settings())
    database = h.read(options.database, schema=not options.code_age)
    read_s = time.perf_counter() - began
    graph = h.load_for(database)
    if options.app_label and options.app_label not in graph.loader.migrated_apps:
        raise ConfigurationError(f"unknown app label {options.app_label!r}: it has no migrations")
    fail_on = options.fail_on or config.fail_on
    server = database.server
    version = (
        parse_server_version(server["version"])[:2] if server.get("version") else DEFAULT_PG_VERSION
    )
    if options.code_age:
        findings = h.code_age(database, graph)
        return _doctor_report(options, database, findings, fail_on, version, {"code_age": True})
    offline = shared_offline_connection(
        database.vendor, version if database.vendor == "postgresql" else ()
    )
    diagnosis = h.diagnose(database, graph, offline)
    extra: dict[str, Any] = {}
    if options.apply and diagnosis.repair:
        backup = options.backup or default_backup_path()
        done = apply_repair(options.database, diagnosis.repair, backup)
        extra["applied"] = {**done.to_dict(), "repair": [r.to_dict() for r in diagnosis.repair]}
        database = h.read(options.database)
        graph = h.load_for(database)
        diagnosis = h.diagnose(database, graph, offline)
    diagnosis.timings["total_s"] = time.perf_counter() - began
    diagnosis.timings["read_s"] = read_s
    assert database.schema is not None
    extra.update(
        {
            "repair": [r.to_dict() for r in diagnosis.repair],
            "migrations": {
                "recorded": len(database.recorded),
                "in_code": len(graph.plan),
                "pending": [list(k) for k in diagnosis.pending],
                "unobservable": sum(
                    1 for j in diagnosis.judgements.values() if j.status == "unobservable"
                ),
            },
            "schema": {"tables": len(database.schema.tables), "queries": database.schema.queries},
            "timings_s": {k: round(v, 3) for k, v in sorted(diagnosis.timings.items())},
        }
    )
    return _doctor_report(options, database, diagnosis.findings, fail_on, version, extra)


def _doctor_report(
    options: DoctorOptions,
    database: Any,
    findings: Sequence[Finding],
    fail_on: Severity,
    version: tuple[int, ...],
    extra: dict[str, Any],
) -> Report:
    from django_rollout.db.history import describe_target

    shown = [f for f in findings if not options.app_label or f.app_label == options.app_label]
    return Report(
        command="doctor",
        s0_source=describe_target(options.database),
        unit=tuple(tuple(k) for k in extra.get("migrations", {}).get("pending", [])),
        findings=tuple(sorted(shown, key=lambda f: f.sort_key)),
        fail_on=fail_on,
        vendor=database.vendor,
        server_version=version,
        extra=extra,
    )
