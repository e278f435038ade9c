"""The JSON envelope of ARCHITECTURE.md."""

from __future__ import annotations

from typing import IO

from django_rollout.api import Report, write_json


def render_json(report: Report, out: IO[str]) -> None:
    write_json(report, out)
    out.write("\n")
