"""The rehearsal as one self-contained HTML page: verdict, the deploy as a timeline
(reporting/timeline.py), where production would have stalled or failed, and the findings.

Everything is rendered server-side as inline SVG and CSS: no script, no font, no network.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from django_rollout.api import Report
from django_rollout.db.locks import NOTED_LOCK_WAIT_MS
from django_rollout.findings import Finding
from django_rollout.reporting.timeline import MIN_STEP_PX, MODES, Step, draw, read_steps

_SPLIT = (  # timings_s keys, in the order the rehearsal spends them
    ("copy_s", "copying the source", "#fda4af"), ("s0_s", "S0 migrations", "#cbd5e1"),
    ("seed_s", "seeding", "#a7f3d0"),
    ("migrate_s", "migrations", "#60a5fa"), ("traffic_s", "traffic", "#fbbf24"),
    ("tracing_s", "lock tracing", "#c084fc"),
)  # fmt: skip


def render(report: Report) -> str:
    """Return the rehearsal ``report`` as one self-contained HTML page."""
    if report.command != "rehearse":
        raise ValueError(f"the HTML timeline shows a rehearsal, not {report.command!r}")
    steps = read_steps(report)
    title = f"django-rollout rehearsal: {report.extra.get('verdict', 'unknown')}"
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            _header(report, steps),
            "<h2>Timeline</h2>",
            _legend(),
            f'<div class="chart">{draw(steps)}</div>',
            _problems(report, steps),
            _findings(report.findings),
            "</body></html>\n",
        ]
    )


def _header(report: Report, steps: Sequence[Step]) -> str:
    extra = report.extra
    verdict = str(extra.get("verdict", "unknown"))
    scratch = extra.get("scratch") or {}
    failed = sum(1 for s in steps if s.failed)
    errors = sum(len(s.traffic_errors) for s in steps)
    waits = [st.wait_ms for s in steps for st in s.statements if st.wait_ms > 0]
    traffic = extra.get("traffic") or {}
    actions, errs = traffic.get("actions") or {}, traffic.get("errors") or {}
    who = "; ".join(
        f"{_e(v)} code: {actions.get(v, 0)} actions, {errs.get(v, 0)} errors"
        for v in sorted({*actions, *errs})
    )
    summary = (
        f'<span class="{"bad" if failed else "good"}">{failed} of {len(steps)} migration(s)'
        f' failed</span> · <span class="{"bad" if errors else "good"}">{errors} kind(s) of'
        f' error hit live code</span> · <span class="{"warn" if waits else "good"}">traffic'
        f" waited {sum(waits):.0f} ms behind {len(waits)} statement(s)</span>"
    )
    unit = "".join(f"<li>{_e(a)}.{_e(m)}</li>" for a, m in report.unit)
    unseeded = extra.get("unseeded_tables") or {}
    return (
        f'<header><h1>Rehearsal <span class="verdict {_e(verdict)}">{_e(verdict)}</span></h1>'
        f'<p class="summary">{summary}</p><dl>'
        f"<dt>S0</dt><dd>{_e(report.s0_source)}</dd>"
        f"<dt>unit</dt><dd><details><summary>{len(report.unit)} migration(s)</summary>"
        f"<ol>{unit}</ol></details></dd>"
        f"<dt>scratch</dt><dd>{_e(scratch.get('vendor', ''))} database"
        f" <code>{_e(scratch.get('name', ''))}</code>{_copied(scratch)}</dd>"
        f"<dt>traffic</dt><dd>{who or 'none'}</dd>"
        f"<dt>time</dt><dd>{_timings(extra.get('timings_s') or {})}</dd>"
        + (f"<dt>not seeded</dt><dd>{_e(', '.join(sorted(unseeded)))}</dd>" if unseeded else "")
        + "</dl></header>"
    )


def _copied(scratch: Mapping[str, Any]) -> str:
    if not scratch.get("copied_from"):
        return ""
    how = f" ({_e(scratch['copy_method'])})" if scratch.get("copy_method") else ""
    return f", a copy of <code>{_e(scratch['copied_from'])}</code>{how}"


def _timings(timings: Mapping[str, float]) -> str:
    """Draw where the rehearsal's time went as one stacked bar."""
    total = float(timings.get("total_s") or 0.0)
    if total <= 0:
        return "not measured"
    shown = [(label, float(timings.get(key) or 0.0), colour) for key, label, colour in _SPLIT]
    other = total - sum(v for _, v, _ in shown)
    if other > 0.0005:
        shown.append(("scratch database and the rest", other, "#e5e7eb"))
    bar = "".join(
        f'<span style="width:{100 * v / total:.2f}%;background:{c}"'
        f' title="{_e(label)}: {v:.2f} s"></span>'
        for label, v, c in shown
        if v > 0
    )
    keys = " · ".join(
        f'<i style="background:{c}"></i>{_e(k)} {v:.2f} s' for k, v, c in shown if v > 0
    )
    return f'{total:.2f} s in all<div class="split">{bar}</div><p class="keys">{keys}</p>'


def _legend() -> str:
    items = "".join(
        f'<li><i style="background:{colour}"></i>{_e(mode)}: {_e(effect)}</li>'
        for mode, colour, effect in MODES
    )
    return (
        f'<ul class="legend">{items}<li><i class="wait-key"></i>traffic waiting behind the'
        ' migration</li><li><i class="fail-key"></i>a failed migration, an error live code'
        ' hit</li></ul><p class="note">Each step is timed from its own start, the steps end to'
        f" end; a step too short to see is widened to {MIN_STEP_PX:.0f} px. Tall bars are locks"
        " that make traffic wait. Hover a bar, statement or mark for its SQL and times.</p>"
    )


def _problems(report: Report, steps: Sequence[Step]) -> str:
    """List, step by step, where production would have stalled or failed."""
    items: list[str] = []
    for s in steps:
        lines: list[str] = []
        if s.error is not None:
            statement = s.error.get("statement")
            lines.append(
                f'<li class="bad">the migration failed: {_code(s.error.get("sqlstate"))}'
                f" {_e(s.error.get('message') or '')}"
                + (f"<pre>{_e(statement)}</pre>" if statement else "")
                + (f'<p class="note">{_ticks(s.recovered)}</p>' if s.recovered else "")
                + "</li>"
            )
        for e in s.traffic_errors:
            rules = f" ({', '.join(e.rules)})" if e.rules else " (no rule predicted it)"
            lines.append(
                f'<li class="bad">{_e(e.code_version)} code hit {_code(e.sqlstate)}'
                f" {_e(e.message)}{_e(rules)}</li>"
            )
        for st in s.statements:
            if st.queued_ms >= NOTED_LOCK_WAIT_MS:
                lines.append(
                    f'<li class="warn">the migration waited {st.queued_ms:.0f} ms for locks'
                    f" traffic held, before it could run<pre>{_e(st.sql)}</pre>"
                    '<p class="note">with a lock_timeout shorter than that, this statement'
                    " fails instead of queueing</p></li>"
                )
            if st.wait_ms > 0:
                held = ", ".join(f"{lk.relation} {lk.mode}" for lk in st.locks)
                lines.append(
                    f'<li class="warn">traffic waited {st.wait_ms:.0f} ms behind'
                    f"<pre>{_e(st.sql)}</pre>"
                    + (f'<p class="note">which took {_e(held)}</p>' if held else "")
                    + "</li>"
                )
        if lines:
            items.append(
                f'<li id="{_e("step-" + s.name)}"><b>{_e(s.name)}</b><ul>{"".join(lines)}</ul></li>'
            )
    rehearsed = {(s.app_label, s.migration) for s in steps}
    missing = [f"{a}.{m}" for a, m in report.unit if (a, m) not in rehearsed]
    if missing:
        items.append(
            '<li class="warn">not rehearsed (the walk ended at a failed migration): '
            f"{_e(', '.join(missing))}</li>"
        )
    body = "".join(items) or '<li class="good">nothing: no failure, no error, no wait</li>'
    return f'<h2>Where production would stall or fail</h2><ol class="problems">{body}</ol>'


def _findings(findings: Sequence[Finding]) -> str:
    rows = []
    for f in findings:
        if f.confirmed:
            confirmed = f"yes ({f.code_version + ' code' if f.code_version else 'the migration'})"
        else:
            confirmed = "no" if f.confirmed is False else "–"
        where = f"{f.app_label}.{f.migration}" if f.app_label and f.migration else "project"
        seen = f'<div class="observed">{_e(f.observed_error)}</div>' if f.observed_error else ""
        css = f"sev-{f.severity}" + (" confirmed" if f.confirmed else "")
        rows.append(
            f'<tr class="{css}"><td>{_e(f.rule or "–")}</td><td>{_e(f.severity)}</td>'
            f"<td>{_e(where)}</td><td>{_e(confirmed)}</td><td>{_ticks(f.message)}{seen}</td></tr>"
        )
    if not rows:
        return "<h2>Findings</h2><p>none</p>"
    return (
        f"<h2>Findings ({len(rows)})</h2><table><thead><tr><th>rule</th><th>severity</th>"
        "<th>migration</th><th>confirmed</th><th>message</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _code(sqlstate: object) -> str:
    return f"<code>[{_e(sqlstate)}]</code>" if sqlstate else ""


def _ticks(text: str) -> str:
    """Escape ``text`` and show its `identifiers` as code, as the messages are written."""
    parts = _e(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return _e(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","DejaVu Sans",sans-serif;margin:16px;
color:#0f172a;background:#fff}h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:22px 0
8px}.verdict{padding:2px 10px;border-radius:4px;color:#fff;text-transform:uppercase;
letter-spacing:.05em;background:#d97706}.verdict.safe{background:#15803d}
.verdict.unsafe{background:#b91c1c}.summary span{font-weight:600}.bad{color:#b91c1c}
.warn{color:#b45309}.good{color:#15803d}dl{display:grid;grid-template-columns:90px 1fr;
gap:2px 12px;margin:8px 0}dt{color:#64748b}dd{margin:0}
details ol{columns:3;font:12px ui-monospace,"DejaVu Sans Mono",monospace}
.split{display:flex;height:12px;width:520px;border:1px solid #cbd5e1;margin:4px 0}
.split span{display:block;height:100%}.keys{margin:0;font-size:12px;color:#334155}
.keys i,.legend i{display:inline-block;width:12px;height:12px;margin:0 4px -2px 0;
border:1px solid #94a3b8}.chart{overflow-x:auto}
svg text{font:11px ui-monospace,"DejaVu Sans Mono",monospace;fill:#0f172a}
.step.even{fill:#f8fafc}.step.odd{fill:#eef2f7}.step.failed{fill:#fee2e2}
.step:hover{fill:#e0e7ff}.boundary{stroke:#94a3b8;stroke-width:1}
.step-label.failed{fill:#b91c1c;font-weight:bold}.failure-label{fill:#b91c1c}.row-name{text-anchor:end}
.row.even{fill:#fff;fill-opacity:.55}.row.odd{fill:#f1f5f9;fill-opacity:.55}
.statement{fill:#475569}.statement.failed{fill:#dc2626}
.lock-bar{stroke:#334155;stroke-width:.5}.lock-bar.strong{stroke:#7f1d1d;stroke-width:1}
.wait{fill:#f59e0b;stroke:#b45309}.wait-stripe{fill:#f59e0b;fill-opacity:.22}
.wait-label{fill:#92400e;font-weight:bold}.cross-disc{fill:#dc2626}
.cross{stroke:#fff;stroke-width:2}.traffic-error-label{fill:#b91c1c;font-weight:bold;
text-anchor:end}.axis,.tick{stroke:#475569}.tick-label{text-anchor:middle;fill:#475569}
.note{color:#64748b;fill:#64748b;font-size:12px}.legend{display:flex;flex-wrap:wrap;
gap:4px 16px;list-style:none;padding:0;margin:8px 0;font-size:12px}
.wait-key{background:#f59e0b}.fail-key{background:#dc2626}.problems pre{margin:2px 0;
padding:4px 6px;background:#f1f5f9;white-space:pre-wrap;font-size:12px}
.problems>li{margin-bottom:6px}.problems ul{padding-left:18px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f1f5f9}tr.confirmed td{background:#fef2f2}
tr.sev-error td:nth-child(2){color:#b91c1c;font-weight:600}
tr.sev-warning td:nth-child(2){color:#b45309}.observed{color:#b91c1c;font-size:12px}
code{font:12px ui-monospace,"DejaVu Sans Mono",monospace;background:#f1f5f9;padding:0 2px}
"""
