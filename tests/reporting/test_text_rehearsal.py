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
