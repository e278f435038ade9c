"""Diagnose a database's migration history: read it once, judge it, word the findings.

This is ``doctor``'s engine. It reads ``django_migrations`` and the schema in one
connection, walks the code's plan for the facts each migration leaves (``graph/expected``),
judges each migration (``db/doctor``), and turns the judgements into H50x findings and the
repair (``db/repair``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.db.migrations.migration import Migration

from django_rollout.db import doctor as d
from django_rollout.db.introspect import Schema, introspect
from django_rollout.db.repair import MIGRATE, RECORD, UNRECORD, Repair, ordered
from django_rollout.db.state import _applied, _cursor, safe_url
from django_rollout.errors import MigrationLoadError
from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.expected import ExpectedWalk
from django_rollout.graph.loader import Graph, load_graph, migration_dirs
from django_rollout.rules.history.h501_recorded_but_not_in_schema import RecordedButNotInSchema
from django_rollout.rules.history.h502_schema_change_not_recorded import SchemaChangeNotRecorded
from django_rollout.rules.history.h503_code_older_than_database import CodeOlderThanDatabase
from django_rollout.rules.history.h504_squash_partly_applied import SquashPartlyApplied
from django_rollout.rules.history.h505_inconsistent_history import InconsistentHistory

MigrationKey = tuple[str, str]
_EVIDENCE_SHOWN = 3


@dataclass(frozen=True)
class DatabaseHistory:
    """What one connection read: the records and the schema."""

    target: str
    vendor: str
    server: Mapping[str, Any]
    recorded: tuple[MigrationKey, ...]
    schema: Schema | None


def read(target: str, *, schema: bool = True) -> DatabaseHistory:
    """Read ``django_migrations`` and (unless told not to) the schema, in one connection."""
    with _cursor(target) as (vendor, cursor, server):
        recorded = _applied(vendor, cursor, target)
        found = introspect(cursor, vendor) if schema else None
    return DatabaseHistory(target, vendor, dict(server), tuple(recorded), found)


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    repair: list[Repair] = field(default_factory=list)
    judgements: dict[MigrationKey, d.Judgement] = field(default_factory=dict)
    pending: list[MigrationKey] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # Apps whose records include migrations this code lacks: their records are not edited.
    older_apps: set[str] = field(default_factory=set)


def _location(graph: Graph, key: MigrationKey) -> Location:
    migration = graph.nodes.get(key)
    path = None if migration is None else graph.path_of(migration)
    if path is None:
        return Location()
    from django_rollout.graph.source import relative

    return Location(relative(path), 1)


def _evidence_text(items: Sequence[d.Evidence]) -> str:
    shown = [e.line() for e in items[:_EVIDENCE_SHOWN]]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _finding(
    rule: Any,
    graph: Graph,
    key: MigrationKey,
    evidence: Sequence[d.Evidence],
    repairs: Sequence[Repair],
    *,
    severity: Severity | None = None,
    message: str | None = None,
    **names: Any,
) -> Finding:
    repair_text = " then ".join(r.command() for r in repairs) or "decide by hand: no safe repair"
    finding: Finding = rule().finding(
        app_label=key[0],
        migration=key[1],
        location=_location(graph, key),
        severity=severity,
        message=message,
        evidence=_evidence_text(evidence),
        repair=repair_text,
        **names,
    )
    return replace(finding, evidence=tuple(e.to_dict() for e in evidence))


def diagnose(history: DatabaseHistory, graph: Graph, offline: Any) -> Diagnosis:
    """Judge every migration of the code against the records and the schema."""
    out = Diagnosis()
    recorded = set(history.recorded)
    plan = graph.plan
    keys = d.plan_keys(plan)
    began = time.perf_counter()
    effects = ExpectedWalk(history.vendor, offline, graph.loader.unmigrated_apps).walk(plan)
    out.timings["expected_s"] = time.perf_counter() - began
    began = time.perf_counter()
    assert history.schema is not None
    recorded_in_plan = _recorded_in_plan(plan, recorded)
    out.judgements = d.judge_all(effects, history.schema, recorded_in_plan)
    out.timings["compare_s"] = time.perf_counter() - began
    _unknown_records(history, graph, recorded, out)
    _squashes(history, graph, recorded, out)
    for key in keys:
        j = out.judgements[key]
        found = len(out.findings)
        if j.recorded:
            _recorded(graph, j, keys, out)
        else:
            _unrecorded(graph, j, out)
        if key[0] in out.older_apps:
            _hold_back(key, found, out)
    _inconsistent(graph, recorded_in_plan, out)
    decided = {r.key for r in out.repair if r.action in (RECORD, MIGRATE)}
    out.pending = [k for k in keys if k not in recorded_in_plan and k not in decided]
    out.repair = ordered(out.repair, keys)
    return out


def _recorded_in_plan(plan: Sequence[Migration], recorded: set[MigrationKey]) -> set[MigrationKey]:
    """Recorded migrations of the plan; a squash counts once all it replaces are recorded."""
    found = set()
    for m in plan:
        key = (m.app_label, m.name)
        if key in recorded or (m.replaces and all(tuple(r) in recorded for r in m.replaces)):
            found.add(key)
    return found


def _later_recorded_in_app(
    key: MigrationKey, keys: Sequence[MigrationKey], recorded: Iterable[MigrationKey]
) -> bool:
    position = keys.index(key)
    done = set(recorded)
    return any(k[0] == key[0] and k in done for k in keys[position + 1 :])


def _recorded(graph: Graph, j: d.Judgement, keys: Sequence[MigrationKey], out: Diagnosis) -> None:
    if j.status == d.NOT_APPLIED:
        others = {k for k, v in out.judgements.items() if v.recorded and k != j.key}
        repairs = [
            Repair(
                UNRECORD,
                j.key[0],
                j.key[1],
                why="recorded, but none of its changes is in the schema",
            ),
            Repair(
                MIGRATE,
                j.key[0],
                j.key[1],
                why="run it: its changes are missing",
                plain_migrate=not _later_recorded_in_app(j.key, keys, others)
                and not _dependents(graph, j.key, others),
            ),
        ]
        out.repair.extend(repairs)
        out.findings.append(_finding(RecordedButNotInSchema, graph, j.key, j.not_done, repairs))
    elif j.status == d.PARTIAL or (j.status == d.DIFFERS and j.not_done):
        first = j.first_not_done
        repairs = []
        if first is not None:
            count = len(graph.nodes[j.key].operations)
            repairs.append(
                Repair(
                    MIGRATE,
                    j.key[0],
                    j.key[1],
                    why=f"finish it: operations {first} to {count - 1} are not in the schema",
                    operations=tuple(range(first, count)),
                )
            )
        out.repair.extend(repairs)
        out.findings.append(
            _finding(RecordedButNotInSchema, graph, j.key, j.not_done + j.differs, repairs)
        )
    elif j.status == d.DIFFERS:
        out.findings.append(_finding(RecordedButNotInSchema, graph, j.key, j.differs, []))


def _unrecorded(graph: Graph, j: d.Judgement, out: Diagnosis) -> None:
    if j.status == d.APPLIED:
        why = "its changes are all in the schema"
        if j.unobservable:
            ops = ", ".join(f"{i} ({name})" for i, name, _ in j.unobservable)
            why += f"; operations {ops} cannot be observed: check their data before recording"
        repairs = [Repair(RECORD, j.key[0], j.key[1], why=why)]
        out.repair.extend(repairs)
        out.findings.append(_finding(SchemaChangeNotRecorded, graph, j.key, j.done, repairs))
    elif j.status == d.PARTIAL:
        first = j.first_not_done
        count = len(graph.nodes[j.key].operations)
        ran = sorted({e.operation_index for e in j.done})
        kind = "non-atomic" if not j.atomic else "atomic (changed by hand?)"
        repairs = [
            Repair(
                MIGRATE,
                j.key[0],
                j.key[1],
                why=f"finish the half-applied {kind} migration: operations"
                f" {', '.join(map(str, ran))} ran, {first} to {count - 1} did not",
                operations=tuple(range(first or 0, count)),
            )
        ]
        out.repair.extend(repairs)
        out.findings.append(
            _finding(
                SchemaChangeNotRecorded,
                graph,
                j.key,
                j.done + j.not_done,
                repairs,
                severity=Severity.ERROR,
                message=(
                    "`{app_label}.{migration}` is half-applied ("
                    + kind
                    + "): {evidence}; `migrate` cannot re-run it"
                ),
            )
        )
    elif j.status == d.DIFFERS:
        out.findings.append(
            _finding(
                SchemaChangeNotRecorded,
                graph,
                j.key,
                j.differs,
                [],
                message=(
                    "`{app_label}.{migration}` is not recorded and the objects it creates exist"
                    " with another definition: {evidence}; `migrate` would fail on them"
                ),
            )
        )


def _hold_back(key: MigrationKey, found: int, out: Diagnosis) -> None:
    """Drop the repair of a migration whose app the code is older than (H503 says why)."""
    out.repair = [r for r in out.repair if r.key != key]
    for n in range(found, len(out.findings)):
        out.findings[n] = replace(
            out.findings[n],
            help=f"Deploy the release this database needs first (H503 on `{key[0]}`):"
            " its records are not edited under older code",
        )


def _dependents(graph: Graph, key: MigrationKey, among: set[MigrationKey]) -> list[MigrationKey]:
    node = graph.loader.graph.node_map.get(key)
    if node is None:
        return []
    return sorted(child.key for child in node.children if child.key in among)


def _inconsistent(graph: Graph, recorded: set[MigrationKey], out: Diagnosis) -> None:
    """Report recorded migrations with unrecorded dependencies, and repair those, and the
    dependencies of what the repair itself records, until the history is consistent."""
    decided = {r.key: r for r in out.repair if r.action in (RECORD, MIGRATE)}
    todo = sorted(recorded | set(decided))
    seen: set[MigrationKey] = set()
    while todo:
        key = todo.pop(0)
        if key in seen:
            continue
        seen.add(key)
        node = graph.loader.graph.node_map.get(key)
        if node is None:
            continue
        for parent in sorted(p.key for p in node.parents):
            if parent in recorded:
                continue
            j = out.judgements.get(parent)
            repair = decided.get(parent)
            if repair is None and parent[0] not in out.older_apps:
                repair = _dependency_repair(key, parent, j)
            if repair is not None and parent not in decided:
                decided[parent] = repair
                out.repair.append(repair)
                todo.append(parent)
            if key not in recorded:
                continue  # recorded by this repair: the dependency is repaired with it
            evidence = [] if j is None else j.done + j.not_done
            out.findings.append(
                _finding(
                    InconsistentHistory,
                    graph,
                    key,
                    evidence,
                    [] if repair is None else [repair],
                    dependency=f"{parent[0]}.{parent[1]}",
                )
            )


def _dependency_repair(
    key: MigrationKey, parent: MigrationKey, j: d.Judgement | None
) -> Repair | None:
    if j is None:
        return None
    if j.status in (d.UNOBSERVABLE, d.APPLIED):
        why = f"{key[0]}.{key[1]} depends on it and is applied"
        if j.unobservable:
            ops = ", ".join(f"{i} ({name})" for i, name, _ in j.unobservable)
            why += f"; operations {ops} cannot be observed in the schema: check their data"
        return Repair(RECORD, parent[0], parent[1], why=why)
    if j.status == d.NOT_APPLIED:
        return Repair(
            MIGRATE,
            parent[0],
            parent[1],
            why=f"run it: {key[0]}.{key[1]} was applied without it",
            plain_migrate=False,
        )
    return None


def _unknown_records(
    history: DatabaseHistory, graph: Graph, recorded: set[MigrationKey], out: Diagnosis
) -> None:
    replaced = {tuple(r) for m in graph.loader.replacements.values() for r in m.replaces}
    known = set(graph.loader.disk_migrations) | replaced
    apps = set(graph.loader.migrated_apps)
    unknown: dict[str, list[str]] = {}
    for app, name in sorted(recorded):
        if (app, name) not in known:
            unknown.setdefault(app, []).append(name)
    dirs = migration_dirs(apps & set(unknown))
    for app, names in sorted(unknown.items()):
        newest = max(names)
        out.older_apps.add(app)
        if app not in apps:
            out.findings.append(
                CodeOlderThanDatabase().finding(
                    app_label=app,
                    migration=newest,
                    severity=Severity.INFO,
                    message=(
                        f"app `{app}` is not installed but has {len(names)} recorded"
                        " migration(s): left over from a removed app, or the code is older"
                    ),
                    help=f"If the app was removed on purpose, delete its rows: app = '{app}'",
                    needs="a release that installs it",
                )
            )
            continue
        commit = _commit_adding(dirs.get(app), newest)
        needs = (
            f"a release that has commit {commit}"
            if commit
            else f"a release that has {app}.{newest}"
        )
        release = f"; it was added in commit {commit}" if commit else ""
        out.findings.append(
            CodeOlderThanDatabase().finding(
                app_label=app,
                migration=newest,
                release=release,
                needs=needs,
                details={"unknown": [f"{app}.{n}" for n in names], "needs": needs},
            )
        )


def _commit_adding(folder: Path | None, name: str) -> str | None:
    """Return the short hash and subject of the commit that added a migration file."""
    if folder is None:
        return None
    try:
        proc = subprocess.run(
            [
                "git",
                "log",
                "--all",
                "--diff-filter=A",
                "-1",
                "--format=%h (%s)",
                "--",
                f"{name}.py",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = proc.stdout.strip()
    return text or None


def _squashes(
    history: DatabaseHistory, graph: Graph, recorded: set[MigrationKey], out: Diagnosis
) -> None:
    disk = set(graph.loader.disk_migrations)
    for key, squash in sorted(graph.loader.replacements.items()):
        replaced = [tuple(r) for r in squash.replaces]
        done = [r for r in replaced if r in recorded]
        if not done or len(done) == len(replaced):
            continue
        missing_files = [r for r in replaced if r not in disk]
        left = [r for r in replaced if r not in recorded]
        listed = ", ".join(f"{a}.{n}" for a, n in left[:3]) + (" ..." if len(left) > 3 else "")
        if missing_files:
            folder = migration_dirs([key[0]]).get(key[0])
            commit = _commit_adding(folder, missing_files[0][1])
            restore = (
                f"restore the replaced files from commit {commit}"
                if commit
                else "restore the replaced migration files"
            )
            out.findings.append(
                SquashPartlyApplied().finding(
                    app_label=key[0],
                    migration=key[1],
                    location=_location(graph, key),
                    evidence=(
                        f"{len(done)} of its {len(replaced)} replaced migrations are recorded"
                        f" (not {listed}) and {len(missing_files)} replaced file(s) were deleted"
                    ),
                    repair=f"{restore}, then run `python manage.py migrate`",
                )
            )
        else:
            out.findings.append(
                SquashPartlyApplied().finding(
                    app_label=key[0],
                    migration=key[1],
                    location=_location(graph, key),
                    severity=Severity.WARNING,
                    evidence=(
                        f"{len(done)} of its {len(replaced)} replaced migrations are recorded"
                        f" (not {listed}); Django finishes with the replaced files"
                    ),
                    repair=(
                        "run `python manage.py migrate` here, and keep the replaced files until"
                        " every environment has applied the squash"
                    ),
                )
            )


def load_for(history: DatabaseHistory) -> Graph:
    """Load the graph as ``migrate`` would for this database (squash or replaced files).

    A squash partly applied whose replaced files are gone is a graph Django cannot build:
    the squash itself is judged then, and H504 says why.
    """
    try:
        return load_graph(history.recorded)
    except MigrationLoadError:
        return load_graph(())


def code_age(history: DatabaseHistory, graph: Graph) -> list[Finding]:
    """Return the H503 findings only: what this database recorded that the code lacks."""
    out = Diagnosis()
    _unknown_records(history, graph, set(history.recorded), out)
    return out.findings


def describe_target(target: str) -> str:
    return f"database:{safe_url(target)}"
