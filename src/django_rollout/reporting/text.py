"""Human-readable report, grouped by migration; colour with rich on a terminal."""

from __future__ import annotations

from itertools import groupby
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from django_rollout.api import Report
from django_rollout.db.locks import NOTED_LOCK_WAIT_MS
from django_rollout.findings import Finding, Severity

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _group(f: Finding) -> str:
    if f.app_label and f.migration:
        return f"{f.app_label}.{f.migration}"
    return f.app_label or "project"


def _code(text: str) -> Text:
    """Render `identifiers` in backticks bold, like the messages are written."""
    out = Text()
    for i, part in enumerate(text.split("`")):
        out.append(part, style="bold" if i % 2 else "")
    return out


def render_text(
    report: Report, out: IO[str], *, explain: bool = False, color: bool | None = None
) -> None:
    console = Console(
        file=out,
        force_terminal=color,
        no_color=color is False,
        highlight=False,
        soft_wrap=True,
    )
    if report.command == "doctor":
        console.print(f"{escape(report.s0_source)}: {_doctor_head(report)}")
    else:
        console.print(f"S0: {escape(report.s0_source)}; judged {len(report.unit)} migration(s)")
    for group, items in groupby(report.findings, key=_group):
        console.print()
        console.print(Text(group, style="bold underline"))
        for f in items:
            line = Text("  ")
            line.append(str(f.location), style="dim")
            line.append("  ")
            line.append(f"{f.severity}", style=_STYLE[f.severity])
            line.append(f" {f.rule or '-'} ", style="bold")
            line.append(f"[{f.name}]", style="dim")
            console.print(line)
            console.print(Text("    ") + _code(f.message))
            if f.confirmed:
                seen = f.observed_error or ""
                who = f" ({f.code_version} code)" if f.code_version else ""
                console.print(Text(f"    confirmed{who}: ", style="bold red") + _code(seen))
            for item in (f.evidence or ())[:_EVIDENCE_LINES]:
                where = f"operation {item['operation_index']} ({item['operation']})"
                console.print(
                    Text("    evidence: ", style="cyan")
                    + _code(f"{item['object']} expected {item['expected']}, {item['observed']}")
                    + Text(f"  [{where}]", style="dim")
                )
            console.print(Text("    help: ", style="green") + _code(f.help))
            if explain and f.recipe:
                for step in f.recipe:
                    console.print(Text("      ") + _code(step))
    counts = report.counts()
    console.print()
    summary = (
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info"
        f" (fail on {report.fail_on})"
    )
    if report.suppressed:
        summary += f"; {len(report.suppressed)} suppressed with a reason"
    console.print(summary)
    if report.command == "rehearse":
        _rehearsal_summary(console, report)
    if report.command == "doctor":
        _doctor_summary(console, report)
    if report.sql is not None:
        console.print()
        for item in report.sql:
            console.print(Text(f"-- {item.app_label}.{item.migration}", style="bold"))
            for s in item.statements:
                prefix = "-- deferred\n" if s.deferred else ""
                console.print(escape(prefix + s.sql))
            if item.error:
                console.print(Text(f"-- SQL not collected offline: {item.error}", style="yellow"))


_SLOWEST = 3  # steps named by their migrate time in a rehearsal's summary


def _rehearsal_summary(console: Console, report: Report) -> None:
    extra = report.extra
    steps = extra.get("steps", [])
    failed = [s for s in steps if s["status"] == "failed"]
    confirmed = sum(1 for f in report.findings if f.confirmed)
    waits = sum(st.get("traffic_wait_ms") or 0 for s in steps for st in s["statements"])
    traffic = extra.get("traffic", {})
    scratch = extra["scratch"]
    if scratch.get("copied_from"):
        console.print(f"copied {scratch['copied_from']} ({scratch['copy_method']})")
    console.print(
        f"rehearsed {len(steps)} migration(s) on {scratch['vendor']}"
        + (f" {scratch['server_version']}" if scratch.get("server_version") else "")
        + f" ({scratch.get('server', 'default')}):"
        f" {confirmed} finding(s) confirmed, traffic waited {waits:.0f} ms,"
        f" traffic actions {traffic.get('actions', {})} errors {traffic.get('errors', {})}"
    )
    slowest = sorted(steps, key=lambda s: -float(s.get("migrate_ms") or 0))[:_SLOWEST]
    if len(steps) > 1 and slowest:
        named = (
            f"{s['app_label']}.{s['migration']} {float(s.get('migrate_ms') or 0):,.0f} ms"
            for s in slowest
        )
        console.print(escape("slowest: " + ", ".join(named)))
    queued = sorted(
        ((sum(st.get("lock_wait_ms") or 0 for st in s["statements"]), s) for s in steps),
        key=lambda pair: -pair[0],
    )
    queued = [(ms, s) for ms, s in queued[:_SLOWEST] if ms >= NOTED_LOCK_WAIT_MS]
    if queued:
        named = (f"{s['app_label']}.{s['migration']} {ms:,.0f} ms" for ms, s in queued)
        console.print(escape("the migration waited for traffic's locks: " + ", ".join(named)))
    for step in failed:
        error = step["error"] or {}
        console.print(
            Text(f"FAILED {step['app_label']}.{step['migration']}: ", style="bold red")
            + Text(f"[{error.get('sqlstate')}] {error.get('message')}")
        )
    if scratch.get("left_running"):
        console.print(
            escape(f"kept {scratch['name']}; the cluster runs until: {scratch['left_running']}")
        )
    verdict = extra.get("verdict")
    style = {"safe": "bold green", "unsafe": "bold red"}.get(str(verdict), "bold yellow")
    console.print(Text(f"verdict: {verdict}", style=style))


_EVIDENCE_LINES = 5


def _doctor_head(report: Report) -> str:
    migrations = report.extra.get("migrations")
    if not migrations:
        return "records compared with the code"
    schema = report.extra.get("schema", {})
    return (
        f"{migrations['recorded']} recorded migration(s), {migrations['in_code']} in the code,"
        f" {schema.get('tables', 0)} table(s) read"
    )


def _doctor_summary(console: Console, report: Report) -> None:
    applied = report.extra.get("applied")
    if applied:
        console.print()
        run = len(applied["migrations_run"])
        console.print(
            f"applied: {applied['records_changed']} record(s) changed, {run} migration(s) run;"
            f" backup: {escape(applied['backup'])}"
        )
    repair = report.extra.get("repair") or []
    if not repair:
        if "repair" in report.extra:
            console.print("repair: nothing to repair")
        return
    console.print()
    console.print(Text("repair (dry run: add --apply to carry it out)", style="bold"))
    for n, step in enumerate(repair, 1):
        console.print(Text(f"  {n}. ") + _code(step["command"]))
        console.print(Text(f"     {step['why']}", style="dim"))
