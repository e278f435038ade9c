"""Configuration: ``ROLLOUT`` in Django settings and ``[tool.django-rollout]`` in pyproject.toml.

Both sources take the same keys; settings win key by key. Every key is optional::

    ROLLOUT = {
        "exclude_apps": ["legacy_reports"],
        "ignore": {"L306": "every migration runs with lock_timeout set by our deploy script"},
        # or, narrowed to one migration:  [{"rule": "L301", "app_label": "catalog",
        #                                   "migration": "0004_x", "reason": "..."}]
        "severity": {"L306": "warning"},
        "start_after": {"auth": "0012_alter_user_first_name_max_length"},
        "vendor": "postgresql",
        "server_version": "17",
        "fail_on": "error",
        "size_thresholds": {"warning": 10000, "error": 1000000},
    }
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django_rollout.errors import ConfigurationError
from django_rollout.findings import Severity

KNOWN_KEYS = frozenset(
    {
        "exclude_apps",
        "ignore",
        "severity",
        "start_after",
        "vendor",
        "server_version",
        "fail_on",
        "size_thresholds",
    }
)
VENDORS = ("postgresql", "sqlite")


@dataclass(frozen=True)
class Suppression:
    """An ignored rule, with the reason a reviewer accepted; scoped or project-wide."""

    rule: str
    reason: str
    app_label: str | None = None
    migration: str | None = None
    source: str = "config"

    def matches(self, rule: str | None, app_label: str | None, migration: str | None) -> bool:
        if rule != self.rule:
            return False
        if self.app_label is not None and self.app_label != app_label:
            return False
        return self.migration is None or self.migration == migration


@dataclass(frozen=True)
class SizeThresholds:
    """Row counts at which L rules move from info to warning and from warning to error."""

    warning: int = 10_000
    error: int = 1_000_000

    def grade(self, rows: int) -> Severity:
        if rows >= self.error:
            return Severity.ERROR
        if rows >= self.warning:
            return Severity.WARNING
        return Severity.INFO


@dataclass(frozen=True)
class Config:
    exclude_apps: frozenset[str] = frozenset()
    suppressions: tuple[Suppression, ...] = ()
    severity_overrides: Mapping[str, Severity] = field(default_factory=dict)
    start_after: Mapping[str, str] = field(default_factory=dict)
    vendor: str | None = None
    server_version: tuple[int, ...] | None = None
    fail_on: Severity = Severity.ERROR
    size_thresholds: SizeThresholds = SizeThresholds()


def find_pyproject(start: Path) -> Path | None:
    """Return the nearest pyproject.toml at or above ``start``."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read [tool.django-rollout]: {exc}") from None
    section = data.get("tool", {}).get("django-rollout", {})
    if not isinstance(section, dict):
        raise ConfigurationError(f"{path}: [tool.django-rollout] must be a table")
    return section


def parse_server_version(value: object) -> tuple[int, ...]:
    text = str(value).strip()
    try:
        parts = tuple(int(p) for p in text.split("."))
    except ValueError:
        raise ConfigurationError(
            f"server_version {text!r} is not a version like '16' or '16.2'"
        ) from None
    if not parts:
        raise ConfigurationError("server_version is empty")
    return parts


def _parse_suppressions(raw: object, source: str) -> tuple[Suppression, ...]:
    if raw is None:
        return ()
    out: list[Suppression] = []
    if isinstance(raw, Mapping):
        for rule, reason in raw.items():
            out.append(_suppression(str(rule), reason, None, None, source))
        return tuple(out)
    if isinstance(raw, list | tuple):
        for item in raw:
            if not isinstance(item, Mapping) or "rule" not in item:
                raise ConfigurationError(
                    f"{source}: each entry of 'ignore' needs 'rule' and 'reason', got {item!r}"
                )
            out.append(
                _suppression(
                    str(item["rule"]),
                    item.get("reason"),
                    item.get("app_label"),
                    item.get("migration"),
                    source,
                )
            )
        return tuple(out)
    raise ConfigurationError(f"{source}: 'ignore' must be a mapping of rule id to reason or a list")


def _suppression(
    rule: str, reason: object, app_label: object, migration: object, source: str
) -> Suppression:
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigurationError(f"{source}: ignoring {rule} needs a reason (a non-empty string)")
    return Suppression(
        rule=rule.upper(),
        reason=reason.strip(),
        app_label=str(app_label) if app_label is not None else None,
        migration=str(migration) if migration is not None else None,
        source=source,
    )


def build_config(*sources: tuple[str, Mapping[str, Any]]) -> Config:
    """Merge configuration sources, later ones winning key by key."""
    merged: dict[str, tuple[str, Any]] = {}
    for source, values in sources:
        if not isinstance(values, Mapping):
            raise ConfigurationError(f"{source}: ROLLOUT must be a dict")
        unknown = set(values) - KNOWN_KEYS
        if unknown:
            known = ", ".join(sorted(KNOWN_KEYS))
            raise ConfigurationError(
                f"{source}: unknown key(s) {', '.join(sorted(unknown))} (known: {known})"
            )
        for key, value in values.items():
            merged[key] = (source, value)

    def get(key: str, default: Any = None) -> tuple[str, Any]:
        return merged.get(key, ("config", default))

    try:
        src, exclude = get("exclude_apps", [])
        src_sev, severities = get("severity", {})
        overrides = {str(k).upper(): Severity.parse(str(v)) for k, v in dict(severities).items()}
        _, start_after = get("start_after", {})
        _, vendor = get("vendor")
        _, version = get("server_version")
        _, fail_on = get("fail_on", "error")
        _, sizes = get("size_thresholds", {})
        thresholds = SizeThresholds(**{k: int(v) for k, v in dict(sizes).items()})
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid django-rollout configuration: {exc}") from None
    if vendor is not None and vendor not in VENDORS:
        raise ConfigurationError(
            f"vendor {vendor!r} is not supported (one of {', '.join(VENDORS)})"
        )
    src_ignore, ignore = get("ignore")
    return Config(
        exclude_apps=frozenset(str(a) for a in exclude),
        suppressions=_parse_suppressions(ignore, src_ignore),
        severity_overrides=overrides,
        start_after={str(k): str(v) for k, v in dict(start_after).items()},
        vendor=vendor,
        server_version=parse_server_version(version) if version is not None else None,
        fail_on=Severity.parse(str(fail_on)),
        size_thresholds=thresholds,
    )


def load_config(settings: Any, cwd: Path | None = None) -> Config:
    """Read pyproject.toml (nearest to ``cwd``) and Django's ``settings.ROLLOUT``."""
    sources: list[tuple[str, Mapping[str, Any]]] = []
    pyproject = find_pyproject(cwd or Path.cwd())
    if pyproject is not None:
        sources.append((f"{pyproject} [tool.django-rollout]", read_pyproject(pyproject)))
    rollout = getattr(settings, "ROLLOUT", None)
    if rollout is not None:
        sources.append(("settings.ROLLOUT", rollout))
    return build_config(*sources)
