"""Renderers: a report knows nothing about rules beyond the Finding it is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from django_rollout.api import Report

FORMATS = ("text", "json", "sarif", "github")


def render(
    report: Report, fmt: str, out: IO[str], *, explain: bool = False, color: bool | None = None
) -> None:
    """Write ``report`` to ``out`` in one of FORMATS."""
    renderer: Callable[..., None]
    if fmt == "text":
        from django_rollout.reporting.text import render_text as renderer

        renderer(report, out, explain=explain, color=color)
        return
    if fmt == "json":
        from django_rollout.reporting.json import render_json as renderer
    elif fmt == "sarif":
        from django_rollout.reporting.sarif import render_sarif as renderer
    elif fmt == "github":
        from django_rollout.reporting.github import render_github as renderer
    else:
        raise ValueError(f"unknown format {fmt!r}")
    renderer(report, out)
