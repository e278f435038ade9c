"""The rehearsal's steps laid end to end on one time axis, drawn as inline SVG.

Each step (one migration) was timed from its own start on the scratch database; here the
steps follow each other in the order they ran. Time inside a step is to scale; a step too
short to see is widened to a minimum width, so the axis is linear only within each step.
Seeding and the rollout's traffic rounds between steps are left out: the axis is the
migrations' own time.

Rows: the step labels, a lane of statements, a lane of traffic (waits behind the migration's
locks, errors the live code hit), then one row per table that any statement locked, each
lock a bar from the statement that took it to the end of its transaction, coloured by
strength. Every bar carries ``class="lock-bar"``, ``data-relation`` and ``data-mode``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django_rollout.api import Report
from django_rollout.db.locks import NOTED_LOCK_WAIT_MS

# Lock modes from weakest to strongest, with their colour and what ordinary traffic
# (SELECT takes ACCESS SHARE; INSERT, UPDATE and DELETE take ROW EXCLUSIVE) does meanwhile.
MODES: tuple[tuple[str, str, str], ...] = (
    ("AccessShareLock", "#e0f2fe", "traffic goes on"),
    ("RowShareLock", "#bae6fd", "traffic goes on"),
    ("RowExclusiveLock", "#7dd3fc", "traffic goes on"),
    ("ShareUpdateExclusiveLock", "#c4b5fd", "traffic goes on; other schema changes wait"),
    ("ShareLock", "#fdba74", "writes wait"),
    ("ShareRowExclusiveLock", "#fb923c", "writes wait"),
    ("ExclusiveLock", "#f97316", "writes wait"),
    ("AccessExclusiveLock", "#dc2626", "reads and writes wait"),
)
_STRENGTH = {mode: n for n, (mode, _, _) in enumerate(MODES)}
_COLOUR = {mode: colour for mode, colour, _ in MODES}
_EFFECT = {mode: effect for mode, _, effect in MODES}
_BLOCKS_TRAFFIC = _STRENGTH["ShareLock"]  # from here up, some traffic waits

PLOT_WIDTH = 1090.0
LABEL_WIDTH = 200.0
MIN_STEP_PX = 14.0
CHAR_PX = 6.7  # the advance of an 11px monospace glyph
LANE_H = 30.0
ROW_H = 22.0
_OBSERVED = re.compile(r"^\[(?P<sqlstate>[0-9A-Z]{5})\] (?P<message>.*)$", re.DOTALL)
_WAIT_PREFIX = "traffic waited "  # how db/confirm.py words a lock finding's wait


@dataclass(frozen=True)
class _Lock:
    relation: str
    mode: str
    held_ms: float
    sampled: bool = False  # seen by the probe's samples: about, and short ones missed


@dataclass(frozen=True)
class _Statement:
    sql: str
    started_ms: float
    duration_ms: float
    locks: tuple[_Lock, ...]
    wait_ms: float
    failed: bool
    queued_ms: float = 0.0  # the statement's own wait for a lock traffic held


@dataclass(frozen=True)
class _TrafficError:
    code_version: str
    sqlstate: str | None
    message: str
    rules: tuple[str, ...]


@dataclass
class Step:
    """One migration as the scratch database ran it, placed on the page's axis."""

    app_label: str
    migration: str
    error: Mapping[str, Any] | None  # set when the step failed
    recovered: str | None
    statements: tuple[_Statement, ...]
    duration_ms: float
    traffic_errors: list[_TrafficError] = field(default_factory=list)
    start_ms: float = 0.0
    x: float = 0.0
    width: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.app_label}.{self.migration}"

    @property
    def failed(self) -> bool:
        return self.error is not None

    def x_at(self, ms: float) -> float:
        """Return the x of ``ms`` after this step's own start."""
        if self.duration_ms <= 0:
            return self.x
        return self.x + self.width * min(max(ms, 0.0), self.duration_ms) / self.duration_ms


@dataclass(frozen=True)
class _Frame:
    """Where the timeline's parts go, in SVG pixels, from the top down."""

    horizontal: bool  # the step labels fit lying down
    relations: tuple[str, ...]
    plot_width: float
    band: float
    y_statements: float
    y_traffic: float
    y_rows: float
    y_axis: float
    left: float = LABEL_WIDTH + 10


def read_steps(report: Report) -> list[Step]:
    """Read the rehearsal report's steps, each with the errors live code hit at it."""
    steps = [_step(item) for item in report.extra.get("steps", [])]
    by_name = {(s.app_label, s.migration): s for s in steps}
    seen: dict[tuple[str, str, str, str | None, str], list[str]] = {}
    for f in report.findings:
        observed = f.observed_error or ""
        if not f.confirmed or f.code_version is None or observed.startswith(_WAIT_PREFIX):
            continue  # not live code's error; a wait is drawn from traffic_wait_ms
        match = _OBSERVED.match(observed)
        sqlstate, message = (match["sqlstate"], match["message"]) if match else (None, observed)
        key = (f.app_label or "", f.migration or "", f.code_version, sqlstate, message)
        seen.setdefault(key, []).extend([f.rule] if f.rule else [])
    for (app_label, migration, who, sqlstate, message), rules in seen.items():
        step = by_name.get((app_label, migration))
        if step is not None:
            errors = step.traffic_errors
            errors.append(_TrafficError(who, sqlstate, message, tuple(dict.fromkeys(rules))))
    return steps


def _step(item: Mapping[str, Any]) -> Step:
    error = (item.get("error") or {}) if item.get("status") == "failed" else None
    raw = list(item.get("statements", ()))
    # The statement that failed: the last one that ran the error's statement.
    culprit = max(
        (i for i, s in enumerate(raw) if error and s["sql"] == error.get("statement")),
        default=-1,
    )
    statements = tuple(
        _Statement(
            str(s["sql"]),
            float(s["started_ms"]),
            float(s["duration_ms"]),
            tuple(
                _Lock(lk["relation"], lk["mode"], lk["held_ms"], bool(lk.get("sampled")))
                for lk in s["locks"]
            ),
            float(s.get("traffic_wait_ms") or 0.0),
            failed=i == culprit,
            queued_ms=float(s.get("lock_wait_ms") or 0.0),
        )
        for i, s in enumerate(raw)
    )
    # A step lasts until its last statement ends or its transaction releases its locks.
    ends = [s.started_ms + s.duration_ms for s in statements]
    ends += [s.started_ms + lk.held_ms for s in statements for lk in s.locks]
    name = (str(item["app_label"]), str(item["migration"]))
    return Step(*name, error, item.get("recovered"), statements, max(ends, default=0.0))


def _lay_out(steps: Sequence[Step], width: float) -> float:
    """Place ``steps`` end to end in ``width`` pixels; return the width used.

    One scale (pixels per ms) serves every step, except that a step narrower than
    MIN_STEP_PX at that scale is widened to it; the scale is the largest that still fits.
    """
    if not steps:
        return width
    width = max(width, len(steps) * MIN_STEP_PX * 1.5)

    def used(scale: float) -> float:
        return sum(max(s.duration_ms * scale, MIN_STEP_PX) for s in steps)

    longest = max(s.duration_ms for s in steps)
    low, high = 0.0, width / longest if longest > 0 else 0.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if used(middle) <= width else (low, middle)
    spare = (width - used(low)) / len(steps)
    x, at = 0.0, 0.0
    for s in steps:
        s.start_ms, s.x = at, x
        s.width = max(s.duration_ms * low, MIN_STEP_PX) + spare
        x += s.width
        at += s.duration_ms
    return width


def draw(steps: Sequence[Step]) -> str:
    """Lay ``steps`` out and draw them: labels, statements, traffic, a row per locked table."""
    plot_width = _lay_out(steps, PLOT_WIDTH)
    horizontal = all(s.width >= len(_step_label(s)) * CHAR_PX + 10 for s in steps)
    relations = _relations(steps)
    band = 42.0 if horizontal else 230.0
    rows = band + 6 + 2 * LANE_H + 8
    axis = rows + ROW_H * max(len(relations), 1)
    frame = _Frame(horizontal, relations, plot_width, band, band + 6, band + 6 + LANE_H, rows, axis)
    width, height = frame.left + plot_width + 20, frame.y_axis + 34
    return "".join(
        [
            f'<svg class="timeline" width="{width:.0f}" height="{height:.0f}"'
            f' viewBox="0 0 {width:.0f} {height:.0f}" role="img"'
            ' aria-label="the deploy as a timeline">',
            *_columns(steps, frame),
            *_rows(frame),
            *_waits(steps, frame),
            *_statements(steps, frame),
            *_lock_bars(steps, frame),
            _axis(steps, frame),
            "</svg>",
        ]
    )


def _columns(steps: Sequence[Step], frame: _Frame) -> Iterable[str]:
    """Yield each step's column, its left boundary and its label."""
    for n, s in enumerate(steps):
        x = frame.left + s.x
        css = "step failed" if s.failed else f"step {'odd' if n % 2 else 'even'}"
        yield (
            f'<a href="#{_e("step-" + s.name)}"><rect class="{css}" x="{x:.1f}" y="0"'
            f' width="{s.width:.1f}" height="{frame.y_axis:.1f}">'
            f"<title>{_e(_step_title(s))}</title></rect></a>"
            f'<line class="boundary" x1="{x:.1f}" y1="0" x2="{x:.1f}"'
            f' y2="{frame.y_axis + 6:.1f}"/>'
        )
        label = _e(_fit(_step_label(s), s.width - 8 if frame.horizontal else frame.band - 8))
        css = "step-label failed" if s.failed else "step-label"
        if frame.horizontal:
            yield f'<text class="{css}" x="{x + 4:.1f}" y="{frame.band - 24:.1f}">{label}</text>'
            if s.error is not None:  # below it, room for the database's message
                said = _e(_fit(str(s.error.get("message") or ""), s.width - 8))
                at = f'x="{x + 4:.1f}" y="{frame.band - 8:.1f}"'
                yield f'<text class="failure-label" {at}>{said}</text>'
        else:
            at = f"{x + s.width / 2 + 4:.1f},{frame.band - 4:.1f}"
            yield f'<text class="{css}" transform="translate({at}) rotate(-90)">{label}</text>'


def _rows(frame: _Frame) -> Iterable[str]:
    """Yield the lanes' names and one named row per locked table."""
    yield _row_name("statements", frame.y_statements, LANE_H, frame.left)
    yield _row_name("traffic", frame.y_traffic, LANE_H, frame.left)
    for n, relation in enumerate(frame.relations):
        y = frame.y_rows + n * ROW_H
        yield (
            f'<rect class="row {"odd" if n % 2 else "even"}" x="{frame.left:.1f}" y="{y:.1f}"'
            f' width="{frame.plot_width:.1f}" height="{ROW_H:.1f}"/>'
        )
        yield _row_name(relation, y, ROW_H, frame.left)
    if not frame.relations:
        yield (
            f'<text class="note" x="{frame.left + 6:.1f}" y="{frame.y_rows + 15:.1f}">no lock'
            " was traced (SQLite shows none; a non-atomic migration's are not read)</text>"
        )


def _waits(steps: Sequence[Step], frame: _Frame) -> Iterable[str]:
    """Yield, for each statement traffic waited behind, a stripe through every row."""
    for s in steps:
        for st in s.statements:
            if st.wait_ms <= 0:
                continue
            x = frame.left + s.x_at(st.started_ms)
            end = frame.left + s.x_at(st.started_ms + max(st.wait_ms, st.duration_ms))
            w = max(end - x, 3.0)
            tip = _e(f"traffic waited {st.wait_ms:.0f} ms behind:\n{st.sql}\n({s.name})")
            y = frame.y_traffic
            yield (
                f'<rect class="wait-stripe" x="{x:.1f}" y="{frame.y_statements:.1f}"'
                f' width="{w:.1f}" height="{frame.y_axis - frame.y_statements:.1f}"/>'
                f'<rect class="wait" x="{x:.1f}" y="{y + 7:.1f}" width="{w:.1f}" height="16">'
                f"<title>{tip}</title></rect>"
            )
            if s.width > 70:
                yield (
                    f'<text class="wait-label" x="{x + w + 3:.1f}" y="{y + 19:.1f}">'
                    f"waited {st.wait_ms:.0f} ms</text>"
                )


def _statements(steps: Sequence[Step], frame: _Frame) -> Iterable[str]:
    """Yield the statements, the failures, and the errors live code hit at each step."""
    y = frame.y_statements
    for s in steps:
        for st in s.statements:
            x = frame.left + s.x_at(st.started_ms)
            w = max(frame.left + s.x_at(st.started_ms + st.duration_ms) - x, 1.5)
            css = "statement failed" if st.failed else "statement"
            tip = f"{st.sql}\n{s.name}: at {st.started_ms:.1f} ms, ran {st.duration_ms:.1f} ms"
            if st.queued_ms >= NOTED_LOCK_WAIT_MS:
                tip += f", of which it waited {st.queued_ms:.0f} ms for traffic's locks"
            yield (
                f'<rect class="{css}" x="{x:.1f}" y="{y + 7:.1f}" width="{w:.1f}"'
                f' height="16"><title>{_e(tip)}</title></rect>'
            )
        end = frame.left + s.x + s.width - 9
        if s.failed:
            error = s.error or {}
            culprit = next((st for st in s.statements if st.failed), None)
            x = frame.left + (s.x_at(culprit.started_ms + culprit.duration_ms) if culprit else s.x)
            tip = f"{s.name} failed: [{error.get('sqlstate')}] {error.get('message')}"
            mark = _cross(min(x + 7, end), y + 15)
            yield f'<g class="failure">{mark}<title>{_e(tip)}</title></g>'
        if s.traffic_errors:
            # At the step's end: most come from the rollout's rounds after it.
            codes = ", ".join(dict.fromkeys(e.sqlstate or "error" for e in s.traffic_errors))
            tip = "\n".join(
                f"{e.code_version} code at {s.name}: [{e.sqlstate}] {e.message}"
                for e in s.traffic_errors
            )
            label = ""
            if s.width > 90:
                label = (
                    f'<text class="traffic-error-label" x="{end - 9:.1f}"'
                    f' y="{frame.y_traffic + 19:.1f}">{_e(_fit(codes, s.width - 30))}</text>'
                )
            yield (
                f'<g class="traffic-error">{_cross(end, frame.y_traffic + 15)}{label}'
                f"<title>{_e(tip)}</title></g>"
            )


def _lock_bars(steps: Sequence[Step], frame: _Frame) -> Iterable[str]:
    """Yield one bar per lock, the strongest drawn last so that it shows where they overlap."""
    bars = [(s, st, lk) for s in steps for st in s.statements for lk in st.locks]
    bars.sort(key=lambda bar: _STRENGTH.get(bar[2].mode, -1))
    for s, st, lk in bars:
        strong = _STRENGTH.get(lk.mode, _BLOCKS_TRAFFIC) >= _BLOCKS_TRAFFIC
        h = 14.0 if strong else 7.0
        y = frame.y_rows + frame.relations.index(lk.relation) * ROW_H + (ROW_H - h) / 2
        x = frame.left + s.x_at(st.started_ms)
        w = max(frame.left + s.x_at(st.started_ms + lk.held_ms) - x, 2.0)
        tip = (
            f"{lk.relation}: {lk.mode} held {'about ' if lk.sampled else ''}"
            f"{lk.held_ms:.1f} ms{' (sampled)' if lk.sampled else ''}"
            f" ({_EFFECT.get(lk.mode, 'unknown mode')})\n{st.sql}\n({s.name})"
        )
        yield (
            f'<rect class="lock-bar{" strong" if strong else ""}"'
            f' data-relation="{_e(lk.relation)}" data-mode="{_e(lk.mode)}" x="{x:.1f}"'
            f' y="{y:.1f}" width="{w:.1f}" height="{h:.0f}"'
            f' fill="{_COLOUR.get(lk.mode, "#94a3b8")}"><title>{_e(tip)}</title></rect>'
        )


def _relations(steps: Sequence[Step]) -> tuple[str, ...]:
    """Return every locked table, in the order the deploy first locked it."""
    seen = {lk.relation: None for s in steps for st in s.statements for lk in st.locks}
    return tuple(seen)


def _row_name(name: str, y: float, height: float, left: float) -> str:
    return (
        f'<text class="row-name" x="{left - 8:.1f}" y="{y + height / 2 + 4:.1f}">'
        f"{_e(_fit(name, LABEL_WIDTH - 8))}<title>{_e(name)}</title></text>"
    )


def _cross(cx: float, cy: float, r: float = 6.0) -> str:
    d = r / 2
    return (
        f'<circle class="cross-disc" cx="{cx:.1f}" cy="{cy:.1f}" r="{r + 2:.1f}"/>'
        f'<path class="cross" d="M{cx - d:.1f} {cy - d:.1f}L{cx + d:.1f} {cy + d:.1f}'
        f'M{cx + d:.1f} {cy - d:.1f}L{cx - d:.1f} {cy + d:.1f}"/>'
    )


def _axis(steps: Sequence[Step], frame: _Frame) -> str:
    """Draw the time axis: round times, each mapped through the step it falls in."""
    left, y = frame.left, frame.y_axis
    parts = [
        f'<line class="axis" x1="{left:.1f}" y1="{y:.1f}" x2="{left + frame.plot_width:.1f}"'
        f' y2="{y:.1f}"/>'
    ]
    total = sum(s.duration_ms for s in steps)
    if total <= 0:
        return "".join(parts)
    magnitude = 10 ** math.floor(math.log10(total / 8))
    tick = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= total / 8)
    last, n = -1e9, 0
    while n * tick <= total + 1e-9:
        at = n * tick
        x = left + next(
            (s.x_at(at - s.start_ms) for s in steps if at <= s.start_ms + s.duration_ms),
            steps[-1].x + steps[-1].width,
        )
        if x - last >= 56:  # where widened steps crowd the ticks, keep the first
            parts.append(
                f'<line class="tick" x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y + 5:.1f}"/>'
                f'<text class="tick-label" x="{x:.1f}" y="{y + 18:.1f}">{_ms(at)}</text>'
            )
            last = x
        n += 1
    return "".join(parts)


def _step_label(s: Step) -> str:
    if s.error is None:
        return s.name
    return " ".join(p for p in ("FAILED", s.error.get("sqlstate"), s.name) if p)


def _step_title(s: Step) -> str:
    lines = [f"{s.name}: {s.duration_ms:.1f} ms, {len(s.statements)} statement(s)"]
    if s.error is not None:
        lines.append(f"FAILED [{s.error.get('sqlstate')}] {s.error.get('message')}")
    if s.recovered:
        lines.append(s.recovered)
    lines += [f"{e.code_version} code: [{e.sqlstate}] {e.message}" for e in s.traffic_errors]
    return "\n".join(lines)


def _fit(text: str, pixels: float) -> str:
    """Cut ``text`` to what ``pixels`` of monospace hold, marking the cut."""
    room = max(int(pixels / CHAR_PX), 1)
    return text if len(text) <= room else text[: room - 1] + "…"


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.3g} s"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
