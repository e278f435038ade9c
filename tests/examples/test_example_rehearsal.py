"""The issue's acceptance on the example project, on the real PostgreSQL server: every C and
D hazard that `check` predicts is confirmed by `rehearse` with the database's own error, no
error is left that the catalogue does not explain, and the safe twins rehearse clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from typing import Any

import pytest

from tests.test_example_accuracy import MANIFEST, SERIOUS, SHOP, _id


@cache
def rehearsal() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(
        [sys.executable, "-m", "django_rollout", "--settings", "shop.settings", "rehearse"]
        + ["--adversarial", "--rows", "50", "--format", "json"],
        cwd=SHOP,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr  # the hazards fail: exit 1, not bad input
    return dict(json.loads(proc.stdout))


def test_every_c_and_d_hazard_check_predicts_is_confirmed_with_the_real_error() -> None:
    predicted = [
        f
        for f in rehearsal()["findings"]
        if f["rule"] and f["rule"][0] in "CD" and f["severity"] in SERIOUS
    ]
    assert len(predicted) >= 25
    unconfirmed = [f"{f['migration']} {f['rule']}" for f in predicted if not f["confirmed"]]
    assert not unconfirmed
    assert all(f["observed_error"].startswith("[") for f in predicted)  # "[SQLSTATE] text"


def _shown(findings: list[dict[str, Any]]) -> str:
    """The findings as a failure should show them: pytest truncates a list of dicts."""
    keys = ("rule", "app_label", "migration", "code_version", "message", "observed_error")
    return "\n".join(json.dumps({k: f.get(k) for k in keys}) for f in findings)


def test_every_observed_error_is_explained_by_a_rule() -> None:
    unexplained = [f for f in rehearsal()["findings"] if f["rule"] is None]
    assert not unexplained, _shown(unexplained)


@pytest.mark.parametrize("twin", MANIFEST.get("safe", []), ids=_id)
def test_safe_twin_rehearses_clean(twin: dict[str, Any]) -> None:
    doc = rehearsal()
    key = (twin["app_label"], twin["migration"])
    [step] = [s for s in doc["steps"] if (s["app_label"], s["migration"]) == key]
    assert step["status"] == "applied", step["error"]
    # An info finding may be confirmed (C109's "only if new code writes children while old
    # code deletes parents" is what the rollout does); no error or warning may.
    seen = [
        f
        for f in doc["findings"]
        if (f["app_label"], f["migration"]) == key
        and ((f["confirmed"] and f["severity"] in SERIOUS) or f["rule"] is None)
    ]
    assert not seen, _shown(seen)
