"""The text summary of a rehearsal: where the migrate time went."""

from __future__ import annotations

import io
from typing import Any

from django_rollout.api import Report
from django_rollout.reporting.text import render_text


def _summary(steps: list[dict[str, Any]]) -> str:
    report = Report(
        command="rehearse",
        s0_source="scratch",
        unit=(),
        findings=(),
        extra={"steps": steps, "scratch": {"vendor": "postgresql"}, "verdict": "safe"},
    )
    out = io.StringIO()
    render_text(report, out, color=False)
    return out.getvalue()


def _step(name: str, migrate_ms: float) -> dict[str, Any]:
    return {
        "app_label": "shop",
        "migration": name,
        "status": "applied",
        "error": None,
        "migrate_ms": migrate_ms,
        "statements": [],
    }


def test_the_slowest_steps_are_named_with_their_migrate_time() -> None:
    steps = [_step("0001_a", 12.4), _step("0002_b", 1662.0), _step("0003_c", 3.0)]
    steps += [_step("0004_d", 250.5), _step("0005_e", 40.0)]
    text = _summary(steps)
    assert "slowest: shop.0002_b 1,662 ms, shop.0004_d 250 ms, shop.0005_e 40 ms" in text
    assert "0001_a" not in text


def test_a_single_step_needs_no_ranking() -> None:
    assert "slowest" not in _summary([_step("0001_a", 12.4)])


def _waited(name: str, *lock_waits: float | None) -> dict[str, Any]:
    step = _step(name, 100.0)
    step["statements"] = [{"traffic_wait_ms": 0.0, "lock_wait_ms": w} for w in lock_waits]
    return step


def test_the_steps_that_waited_for_traffic_locks_are_named() -> None:
    steps = [_waited("0001_a", 0.0, 0.2), _waited("0002_b", 600.0, 350.4)]
    steps += [_waited("0003_c", None), _waited("0004_d", 0.0, 12.0)]
    text = _summary(steps)
    assert "waited for traffic's locks: shop.0002_b 950 ms, shop.0004_d 12 ms\n" in text
    # under a millisecond is no wait worth naming; SQLite (null) has no such measure
    assert "0001_a" not in text.split("waited for traffic's locks")[1]


def test_no_wait_no_line() -> None:
    text = _summary([_waited("0001_a", 0.0), _waited("0002_b", None)])
    assert "waited for traffic's locks" not in text
