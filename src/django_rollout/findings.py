"""Finding, Severity, Location: the one shape every face renders."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any


class Severity(enum.IntEnum):
    """How sure a finding is to break production; ordered so that comparisons work."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, value: str) -> Severity:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {value!r} (expected one of {names})") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Location:
    """Where a finding points: a file and a 1-based line, when known."""

    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.path is None:
            return "<unknown>"
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Finding:
    """One hazard found in one operation (or migration, or the project).

    `operation_index` is None for deferred SQL, graph-level and start-up findings.
    `recipe` holds the filled-in safe sequence; it is rendered only with --explain.
    """

    rule: str | None
    name: str
    severity: Severity
    message: str
    help: str
    app_label: str | None = None
    migration: str | None = None
    operation_index: int | None = None
    operation: str | None = None
    location: Location = field(default_factory=Location)
    recipe: tuple[str, ...] = ()
    # Extra facts a rule wants to show (table size used for grading, the SQL quoted, ...).
    details: tuple[tuple[str, Any], ...] = ()
    # Set by a rehearsal only: whether the database showed the hazard, its own error
    # text, and the code version ("old" or "new") whose traffic hit it.
    confirmed: bool | None = None
    observed_error: str | None = None
    code_version: str | None = None
    # Set by doctor only: the schema objects that show the finding, each a small dict.
    evidence: tuple[dict[str, Any], ...] | None = None

    def with_severity(self, severity: Severity) -> Finding:
        return replace(self, severity=severity)

    @property
    def sort_key(self) -> tuple[str, str, int, str]:
        return (
            self.app_label or "",
            self.migration or "",
            -1 if self.operation_index is None else self.operation_index,
            self.rule or "",
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "name": self.name,
            "severity": str(self.severity),
            "app_label": self.app_label,
            "migration": self.migration,
            "operation_index": self.operation_index,
            "operation": self.operation,
            "path": self.location.path,
            "line": self.location.line,
            "message": self.message,
            "help": self.help,
            "recipe": list(self.recipe),
            "details": {k: v for k, v in self.details},
        }
        if self.confirmed is not None:
            out["confirmed"] = self.confirmed
            out["observed_error"] = self.observed_error
            out["code_version"] = self.code_version
        if self.evidence is not None:
            out["evidence"] = list(self.evidence)
        return out
