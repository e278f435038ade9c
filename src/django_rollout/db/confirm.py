"""Match what a rehearsal observed with the static findings (pure: no connection).

A finding is confirmed when an error observed at its migration has one of its rule's
SQLSTATEs (or classes) on one of its operation's tables (on its column, when the finding
names one in ``details`` and the error names one too), hitting the code a compatibility
rule (C) speaks of, or the migration itself for the others (ARCHITECTURE.md). A lock rule
(L) is confirmed when traffic waited while a statement of its migration held a lock on one of
its tables, or when a wait there ended in a lock error (a deadlock, a lock timeout), whoever
it hit: the old code, the new code or the migration. An error that no finding explains is
reported with ``rule: null``. A migration that failed is
an error whatever the severity of the finding it confirms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from django_rollout.db.locks import NOTED_LOCK_WAIT_MS
from django_rollout.db.rehearse import Rehearsal, Step
from django_rollout.db.traffic import Observed
from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import rule_by_id

SAFE, UNSAFE, INCONCLUSIVE = "safe", "unsafe", "inconclusive"
# The errors a wait for a lock ends in: deadlock_detected, lock_not_available (lock_timeout).
LOCK_ERRORS = ("40P01", "55P03")


def confirm(findings: Iterable[Finding], rehearsal: Rehearsal) -> list[Finding]:
    """Return every finding with ``confirmed``/``observed_error``/``code_version`` set, plus
    a ``rule: null`` finding for each observed error no finding explains."""
    steps = {(s.app_label, s.migration): s for s in rehearsal.steps}
    observed = [s.error for s in rehearsal.steps if s.error is not None]
    observed += rehearsal.traffic_errors
    explained: set[int] = set()
    out: list[Finding] = []
    started = [o for o in observed if o.action == "startup"]
    order = {(s.app_label, s.migration): i for i, s in enumerate(rehearsal.steps)}
    # One release beside the whole unit: the same failure at a later step is not a new one.
    repeats = _repeats(observed, order) if rehearsal.one_release else {}
    unconfirmed: list[int] = []  # where in ``out``: findings their own step did not confirm
    for finding in findings:
        step = steps.get((finding.app_label or "", finding.migration or ""))
        if started and _about_startup(finding):
            # The application, started between migrations, failed as the rule said it would.
            explained.update(id(o) for o in started)
            out.append(
                replace(
                    finding,
                    confirmed=True,
                    observed_error=_describe(started[0]),
                    code_version="new",
                )
            )
            continue
        if step is None or finding.rule is None:
            # Not rehearsed (after a failure, or about the project): not confirmed.
            out.append(replace(finding, confirmed=False))
            continue
        matches = _matching_errors(finding, step, observed)
        explained.update(id(m) for m in matches)
        match = next((m for m in matches if m.code_version is None), None)
        match = match or (matches[0] if matches else None)
        if match is not None:
            severity = Severity.ERROR if match.code_version is None else finding.severity
            out.append(
                replace(
                    finding,
                    severity=max(severity, finding.severity),
                    confirmed=True,
                    observed_error=_describe(match),
                    code_version=match.code_version,
                )
            )
        elif _waited_on(finding, step):
            said = f"traffic waited {_wait(step):.0f} ms behind its locks"
            queued = sum(s.lock_wait_ms or 0.0 for s in step.statements)
            if queued >= NOTED_LOCK_WAIT_MS:
                # The lock queue both ways: what a lock_timeout on the migration would cut.
                said += f", and the migration waited {queued:.0f} ms for locks traffic held"
            out.append(replace(finding, confirmed=True, observed_error=said, code_version="old"))
        else:
            unconfirmed.append(len(out))
            out.append(replace(finding, confirmed=False))
    if rehearsal.one_release:
        _confirm_later(out, unconfirmed, steps, order, observed, explained, repeats)
    # A repeat goes with the failure it repeats: explained with it, or reported with it.
    later: dict[int, set[tuple[str | None, str | None]]] = {}
    for o in observed:
        first = repeats.get(id(o))
        if first is not None and id(o) not in explained:
            if id(first) in explained:
                explained.add(id(o))
            else:
                later.setdefault(id(first), set()).add((o.app_label, o.migration))
    # The application started between migrations hits the same missing column before every
    # migration until the one that adds it: report it once, at that migration, with a count.
    starts: dict[tuple[object, ...], list[Observed]] = {}
    for o in observed:
        if id(o) not in explained and o.during == "interleaved" and o.action != "startup":
            starts.setdefault((o.sqlstate, o.table, o.column or o.message), []).append(o)
    latest = {key: seen[-1].migration for key, seen in starts.items()}
    earlier = {
        id(o): len({s.migration for s in seen}) - 1 for key, seen in starts.items() for o in seen
    }
    superseded = {id(o) for key, seen in starts.items() for o in seen if o.migration != latest[key]}
    groups: dict[tuple[object, ...], list[Observed]] = {}
    for o in observed:
        if id(o) not in explained and id(o) not in superseded and id(o) not in repeats:
            key = (o.app_label, o.migration, o.code_version, o.sqlstate, o.table)
            groups.setdefault(key, []).append(o)
    for group in groups.values():
        steps_later = {step for o in group for step in later.get(id(o), ())}
        out.append(_unexplained(group, max(earlier.get(id(o), 0) for o in group), len(steps_later)))
    return out


def _repeats(
    observed: Sequence[Observed], order: dict[tuple[str, str], int]
) -> dict[int, Observed]:
    """Each error of live code that an earlier step already saw (the same code version,
    SQLSTATE, table and column), mapped to that first one. Within one deploy the old release
    that fails on a column the unit's first migration dropped fails again after each later
    migration: one failure, not one per migration."""
    last = len(order)
    code = [o for o in observed if o.code_version is not None and o.during != "interleaved"]
    code.sort(key=lambda o: order.get((o.app_label or "", o.migration or ""), last))
    first: dict[tuple[str | None, ...], Observed] = {}
    out: dict[int, Observed] = {}
    for o in code:
        seen = first.setdefault((o.code_version, o.sqlstate, o.table, o.column), o)
        if (seen.app_label, seen.migration) != (o.app_label, o.migration):
            out[id(o)] = seen
    return out


def _confirm_later(
    out: list[Finding],
    unconfirmed: Sequence[int],
    steps: dict[tuple[str, str], Step],
    order: dict[tuple[str, str], int],
    observed: Sequence[Observed],
    explained: set[int],
    repeats: dict[int, Observed],
) -> None:
    """Within one deploy, confirm a finding no error at its own migration confirmed with an
    error of live code first seen at a later step that nothing there explains: the same
    release serves throughout, and some failures need what only comes later (the new
    release's rows, written at the rollout after the last migration, for C109)."""
    fresh = [
        o
        for o in observed
        if o.code_version is not None
        and o.during != "interleaved"
        and id(o) not in explained
        and id(o) not in repeats
    ]
    for index in unconfirmed:
        finding = out[index]
        rule = rule_by_id(finding.rule or "")
        if rule is None or rule.family() != "compat":
            continue  # a lock is its migration's; the others speak of the migration itself
        key = (finding.app_label or "", finding.migration or "")
        step = steps[key]
        after = [
            o for o in fresh if order.get((o.app_label or "", o.migration or ""), -1) > order[key]
        ]
        matches = _matching_errors(finding, step, after, at_its_step=False)
        if matches:
            explained.update(id(m) for m in matches)
            out[index] = replace(
                finding,
                confirmed=True,
                observed_error=_describe(matches[0]),
                code_version=matches[0].code_version,
            )


def _about_startup(finding: Finding) -> bool:
    """Return True for a finding of a rule about what the application does as it starts."""
    rule = rule_by_id(finding.rule or "")
    return rule is not None and rule.family() == "runtime"


def _matching_errors(
    finding: Finding, step: Step, observed: Sequence[Observed], at_its_step: bool = True
) -> list[Observed]:
    """The observed errors of the finding's migration (any of ``observed`` unless
    ``at_its_step``) that its rule explains."""
    rule = rule_by_id(finding.rule or "")
    if rule is None:
        return []
    # Compatibility hazards happen to code (old or new), lock hazards to whoever waits, the
    # others to the migration.
    family = rule.family()
    codes = LOCK_ERRORS if family == "locks" else rule.observed_as(finding)
    if not codes:
        return []
    tables = _tables(finding, step)
    hits = {"compat": (True,), "locks": (True, False)}.get(family, (False,))
    return [
        found
        for found in observed
        if (
            not at_its_step
            or (found.app_label, found.migration) == (step.app_label, step.migration)
        )
        and (found.code_version is not None) in hits
        and found.sqlstate
        and found.sqlstate.startswith(codes)
        and (tables is None or found.table is None or found.table in tables)
        and _same_column(finding, found)
    ]


def _same_column(finding: Finding, found: Observed) -> bool:
    """False when the finding names the table and column it is about (``details``) and
    the error names another: two references added to one table are two findings, and a
    violation of one confirms that one only. True when either side does not say."""
    said = dict(finding.details)
    table, column = said.get("table"), said.get("column")
    if table is None or column is None or found.column is None:
        return True
    return (found.table in (None, table)) and found.column == column


def _waited_on(finding: Finding, step: Step) -> bool:
    if not (finding.rule or "").startswith("L"):
        return False
    tables = _tables(finding, step)
    for statement in step.statements:
        if not statement.traffic_wait_ms:
            continue
        held = {lock.relation for lock in statement.locks}
        if tables is None or held & tables or not held:
            return True
    return False


def _tables(finding: Finding, step: Step) -> frozenset[str] | None:
    """The tables a finding is about: its operation's, and those it names itself (a lock
    finding about the whole transaction names every table it holds, L306, L308)."""
    if finding.operation_index is None:
        return None
    tables = step.tables.get(finding.operation_index)
    named = dict(finding.details).get("tables")
    if tables is None or not named:
        return tables
    return tables | frozenset(named)


def _wait(step: Step) -> float:
    return sum(s.traffic_wait_ms or 0.0 for s in step.statements)


def _describe(found: Observed) -> str:
    code = f"[{found.sqlstate}] " if found.sqlstate else ""
    return f"{code}{found.message}"


def _unexplained(group: Sequence[Observed], earlier: int = 0, later: int = 0) -> Finding:
    """One ``rule: null`` finding per migration, code version, SQLSTATE and table;
    ``earlier``: how many earlier starts of the application hit the same error; ``later``:
    after how many later migrations of the deploy the same release hit it again."""
    found = group[0]
    actions = sorted({o.action for o in group if o.action and o.code_version})
    who = {
        None: "the migration",
        "old": "the release still serving (old code)",
        "new": "the release being deployed (new code)",
    }[found.code_version]
    severity = Severity.ERROR
    if found.during == "interleaved":
        also = f" (as at {earlier} earlier start(s))" if earlier else ""
        who += f", started before `{found.migration}` ran{also},"
        if found.action != "startup":
            # Requests fail until the migrations are done; a server that cannot start at all
            # stays an error.
            severity = Severity.WARNING
    where = f" on `{found.table}`" if found.table else ""
    action = f" ({', '.join(actions)})" if actions else ""
    if later:
        action += f", and again after {later} later migration(s) of the deploy"
    return Finding(
        rule=None,
        name="observed-error",
        severity=severity,
        message=f"{who} fails{where}{action}: {found.message}",
        help="no rule predicted this error: read the statement and the database's message",
        app_label=found.app_label,
        migration=found.migration,
        confirmed=True,
        observed_error=_describe(found),
        code_version=found.code_version,
        details=tuple(
            (k, v)
            for k, v in (("sqlstate", found.sqlstate), ("statement", found.statement))
            if v is not None
        ),
    )


def verdict(findings: Sequence[Finding], rehearsal: Rehearsal, production: str) -> str:
    """``unsafe`` when a migration failed or an error was confirmed; ``safe`` otherwise,
    except that SQLite cannot see locks: for a PostgreSQL production it is inconclusive."""
    if rehearsal.failed is not None or any(
        f.confirmed and f.severity >= Severity.ERROR for f in findings
    ):
        return UNSAFE
    if rehearsal.vendor != production:
        return INCONCLUSIVE
    return SAFE
