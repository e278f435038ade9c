"""The committed rule docs are what the docstrings generate."""

from __future__ import annotations

from pathlib import Path

from django_rollout.rules.docs import render_all

DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules"


def test_rule_docs_are_generated_from_docstrings() -> None:
    expected = render_all()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in DOCS.glob("*.md")}
    stale = sorted(name for name in expected if on_disk.get(name) != expected[name])
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, (
        f"docs/rules is out of date ({stale or extra}): run"
        " `python -m django_rollout.rules.docs docs/rules`"
    )
