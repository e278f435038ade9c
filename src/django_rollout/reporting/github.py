"""GitHub Actions workflow commands: one annotation per finding."""

from __future__ import annotations

from typing import IO

from django_rollout.api import Report
from django_rollout.findings import Finding, Severity

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(finding: Finding) -> str:
    props = []
    if finding.location.path:
        props.append(f"file={_escape_property(finding.location.path)}")
        if finding.location.line:
            props.append(f"line={finding.location.line}")
    title = f"{finding.rule or 'rehearsal'} {finding.name}"
    props.append(f"title={_escape_property(title)}")
    body = f"{finding.message}\n{finding.help}"
    return f"::{_LEVEL[finding.severity]} {','.join(props)}::{_escape_data(body)}"


def render_github(report: Report, out: IO[str]) -> None:
    for finding in report.findings:
        out.write(annotation(finding) + "\n")
    counts = report.counts()
    out.write(
        f"django-rollout {report.command}: {counts['error']} error(s), {counts['warning']}"
        f" warning(s), {counts['info']} info; S0: {report.s0_source}\n"
    )
