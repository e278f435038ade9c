"""The JSON envelope of ARCHITECTURE.md."""

from __future__ import annotations

from typing import IO

from django_rollout.api import Report, dumps


def render_json(report: Report, out: IO[str]) -> None:
    out.write(dumps(report))
    out.write("\n")
