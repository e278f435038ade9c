"""S0, the deployed state: which migrations are applied where the current release runs.

Sources (ARCHITECTURE.md): none (each migration against the state just before it), a git ref,
a database (read by ``django_rollout.db``), or a snapshot file written by ``snapshot``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django_rollout.errors import DeployedStateError

MigrationKey = tuple[str, str]
SNAPSHOT_FORMAT = "django-rollout-snapshot"
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class Deployed:
    """What S0 is, and what it knows about table sizes."""

    source: str
    applied: frozenset[MigrationKey] | None = None  # None: each migration on its own
    row_counts: Mapping[str, int] | None = None
    server: Mapping[str, Any] = field(default_factory=dict)

    @property
    def each_on_its_own(self) -> bool:
        return self.applied is None


EACH = Deployed(source="the state just before each migration")


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DeployedStateError("--since needs git, and git is not installed") from None


def _toplevel(folder: Path) -> Path | None:
    result = _git(["rev-parse", "--show-toplevel"], folder)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def _ignored(folder: Path, top: Path) -> bool:
    return _git(["check-ignore", "-q", str(folder)], top).returncode == 0


def _names_on_disk(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if not p.name.startswith(("_", "~"))}


def from_git(ref: str, migration_dirs: Mapping[str, Path]) -> Deployed:
    """Return S0 as the migration names present in the git tree at ``ref``.

    Names, not contents: a migration edited since ``ref`` counts as deployed. Apps whose
    migrations live outside any git work tree (site-packages) count as deployed as they are:
    git cannot see their upgrades; a snapshot can.
    """
    applied: set[MigrationKey] = set()
    project_top = _toplevel(Path.cwd())
    if project_top is None:
        raise DeployedStateError(f"--since {ref}: the current directory is not in a git work tree")
    by_repo: dict[Path, list[tuple[str, Path]]] = {}
    for app_label, folder in migration_dirs.items():
        # Only the project's own repository says what was deployed; a folder in another
        # repository (pyenv's checkout, a vendored tool) or ignored by git (a virtualenv
        # inside the project) is third-party code, deployed as it is on disk.
        top = _toplevel(folder)
        if top is None or top.resolve() != project_top.resolve() or _ignored(folder, top):
            applied.update((app_label, name) for name in _names_on_disk(folder))
        else:
            by_repo.setdefault(top, []).append((app_label, folder))
    if not by_repo:
        raise DeployedStateError(
            f"--since {ref}: no app's migrations are tracked in the git work tree of {project_top}"
        )
    for top, apps in by_repo.items():
        check = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top)
        if check.returncode != 0:
            shallow = _git(["rev-parse", "--is-shallow-repository"], top).stdout.strip()
            hint = (
                " (this is a shallow clone: fetch the history, e.g. actions/checkout with"
                " fetch-depth: 0)"
                if shallow == "true"
                else ""
            )
            raise DeployedStateError(f"--since: unknown git ref {ref!r} in {top}{hint}")
        rels = {app: folder.resolve().relative_to(top.resolve()).as_posix() for app, folder in apps}
        listing = _git(
            ["ls-tree", "-r", "--name-only", ref, "--", *sorted(set(rels.values()))], top
        )
        if listing.returncode != 0:
            raise DeployedStateError(f"--since {ref}: git ls-tree failed: {listing.stderr.strip()}")
        files = listing.stdout.splitlines()
        for app_label, rel in rels.items():
            prefix = rel.rstrip("/") + "/"
            for line in files:
                if not line.startswith(prefix):
                    continue
                rest = line[len(prefix) :]
                if "/" in rest or not rest.endswith(".py") or rest.startswith(("_", "~")):
                    continue
                applied.add((app_label, rest[:-3]))
    return Deployed(source=f"git:{ref}", applied=frozenset(applied))


def snapshot_document(
    applied: Iterable[MigrationKey],
    row_counts: Mapping[str, int],
    server: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the JSON document ``django-rollout snapshot`` writes."""
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "server": dict(server),
        "applied": sorted([app, name] for app, name in applied),
        "tables": dict(sorted(row_counts.items())),
    }


def from_snapshot(path: str) -> Deployed:
    """Read a snapshot written by ``django-rollout snapshot``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployedStateError(f"--applied-from {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeployedStateError(
            f"--applied-from {path}: not a django-rollout snapshot (invalid JSON at line"
            f" {exc.lineno})"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        raise DeployedStateError(
            f"--applied-from {path}: not a django-rollout snapshot (write one with"
            " `django-rollout snapshot > deployed.json`)"
        )
    if doc.get("version") != SNAPSHOT_VERSION:
        raise DeployedStateError(
            f"--applied-from {path}: snapshot version {doc.get('version')!r} is not supported"
        )
    try:
        applied = frozenset((str(a), str(n)) for a, n in doc["applied"])
        tables = {str(k): int(v) for k, v in dict(doc.get("tables", {})).items()}
    except (KeyError, TypeError, ValueError):
        raise DeployedStateError(f"--applied-from {path}: malformed snapshot") from None
    return Deployed(
        source=f"snapshot:{path}",
        applied=applied,
        row_counts=tables,
        server=dict(doc.get("server") or {}),
    )
