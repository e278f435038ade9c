"""Accuracy on the example project: every seeded hazard is reported with the right rule id,
and the safe twins report no error or warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"
MANIFEST = (
    json.loads((SHOP / "expected.json").read_text()) if (SHOP / "expected.json").exists() else {}
)
SERIOUS = ("error", "warning")


@cache
def report() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "django_rollout",
            "--settings",
            "shop.settings",
            "check",
            "--format",
            "json",
        ],
        cwd=SHOP,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def reported() -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in report()["findings"]:
        if f["severity"] in SERIOUS and f["migration"]:
            found[(f["app_label"], f["migration"])].add(f["rule"])
    return found


def _id(entry: dict[str, Any]) -> str:
    return f"{entry['app_label']}.{entry['migration']}"


@pytest.mark.parametrize("hazard", MANIFEST.get("hazards", []), ids=_id)
def test_seeded_hazard_is_reported_with_its_rule(hazard: dict[str, Any]) -> None:
    got = reported()[(hazard["app_label"], hazard["migration"])]
    missing = set(hazard["rules"]) - got
    assert not missing, f"{_id(hazard)}: expected {sorted(hazard['rules'])}, got {sorted(got)}"


@pytest.mark.parametrize("hazard", MANIFEST.get("hazards", []), ids=_id)
def test_hazard_reports_nothing_unexpected(hazard: dict[str, Any]) -> None:
    got = reported()[(hazard["app_label"], hazard["migration"])]
    extra = got - set(hazard["rules"])
    assert not extra, f"{_id(hazard)}: unexpected {sorted(extra)} (expected {hazard['rules']})"


@pytest.mark.parametrize("safe", MANIFEST.get("safe", []), ids=_id)
def test_safe_twin_reports_no_error_or_warning(safe: dict[str, Any]) -> None:
    got = reported()[(safe["app_label"], safe["migration"])]
    assert not got, f"{_id(safe)} (safe twin of {safe.get('twin_of')}) reports {sorted(got)}"


def test_no_error_or_warning_outside_the_manifest() -> None:
    named = {(e["app_label"], e["migration"]) for e in MANIFEST["hazards"] + MANIFEST["safe"]}
    stray = {k: v for k, v in reported().items() if k not in named}
    assert not stray, f"findings on migrations the manifest does not name: {stray}"


def test_startup_queries_are_reported() -> None:
    rules = {f["rule"] for f in report()["findings"] if f["migration"] is None}
    for rule in MANIFEST.get("startup", []):
        assert rule in rules
    a601 = [f for f in report()["findings"] if f["rule"] == "A601"]
    assert all(f["path"] and f["line"] for f in a601)


def test_reasoned_suppression_in_the_example_is_used() -> None:
    assert report()["suppressed"], "the example's rollout_ignore suppresses nothing"
    assert all(s["reason"] for s in report()["suppressed"])
