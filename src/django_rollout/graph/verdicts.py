"""Each migration's findings in the default run, kept between runs.

In the default run every migration is judged on its own, against the state just before it,
and that verdict is decided by what the walk has read: the migration files up to it in plan
order, the project's modules the migration refers to (a RunPython function, a custom field,
a callable default), the settings that shape the graph, the configuration, the rules and
the Django that runs them. A key hashes all of it, chained along the plan, so a change to a
migration re-judges it and every migration after it, and a change to a module re-judges the
migrations that refer to it (directly, or through another of the project's modules).

Anything the key cannot see is not cached: a unit (``--since``, ``--database``,
``--applied-from``) is always judged in full, and a migration without a readable file ends
the chain. The store is one pickle per salt in the cache directory (``.django_rollout_cache``
by default; ``--no-cache`` turns it off). It is local and written by this tool, like the
bytecode it sits next to; an unreadable store is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from django.db.migrations.migration import Migration

import django_rollout
from django_rollout.findings import Finding

FORMAT = 1
_KEPT_STORES = 8  # one per salt: a few settings modules or configurations side by side
# A file modified less than this before the store was written may have changed again within
# the clock's granularity with the same size: hash it anew.
_RACY_NS = 2_000_000_000
# Settings that change the graph or the state without changing a migration file.
_SETTINGS = ("AUTH_USER_MODEL", "INSTALLED_APPS", "MIGRATION_MODULES", "USE_TZ", "ROLLOUT")


def _installed_roots() -> tuple[str, ...]:
    """Folders whose modules are versioned by their distribution, not edited in place."""
    paths = sysconfig.get_paths()
    roots = {
        paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths
    }
    roots.add(str(Path(django_rollout.__file__).parent))
    both = {os.path.abspath(r) for r in roots} | {os.path.realpath(r) for r in roots}
    return tuple(sorted(os.path.join(r, "") for r in both))


class Sources:
    """Content hashes of files and of the project modules a module refers to, memoised."""

    def __init__(self) -> None:
        self._files: dict[str, str] = {}
        # (size, mtime_ns, hash) per path: ``known`` from the store, ``index`` for the next.
        self.known: Mapping[str, tuple[int, int, str]] = {}
        self.known_before = 0
        self.index: dict[str, tuple[int, int, str]] = {}
        self.read = 0  # files hashed from their content in this run
        self._closures: dict[str, tuple[str, ...]] = {}
        self._modules: dict[str, str | None] = {}
        self._installed = _installed_roots()

    def file(self, path: str) -> str:
        """Return the hash of a file's content. A file whose size and modification time
        are those ``known`` from the last run keeps its hash unread, unless it was modified
        too close to when that run stored it to tell two writes apart (git's racy entries)."""
        digest = self._files.get(path)
        if digest is not None:
            return digest
        try:
            stat = os.stat(path)
            known = self.known.get(path)
            if (
                known is not None
                and known[:2] == (stat.st_size, stat.st_mtime_ns)
                and stat.st_mtime_ns < self.known_before
            ):
                digest = known[2]
            else:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                self.read += 1
            self.index[path] = (stat.st_size, stat.st_mtime_ns, digest)
        except OSError:
            digest = "unreadable"
        self._files[path] = digest
        return digest

    def project_file(self, module: ModuleType) -> str | None:
        name = module.__name__
        if name in self._modules:
            return self._modules[name]
        path = getattr(module, "__file__", None)
        found = None
        if path and path.endswith(".py"):
            found = os.path.abspath(path)
            if found.startswith(self._installed) or os.path.realpath(found).startswith(
                self._installed
            ):
                found = None
        self._modules[name] = found
        return found

    def referred(self, module: ModuleType) -> tuple[str, ...]:
        """Return the project files ``module`` refers to, through its names, transitively.

        A name bound to a module, or to a class or function defined in one, leads to that
        module. Installed packages (site-packages, the standard library, Django, this tool)
        are left out: their versions are in the salt.
        """
        name = module.__name__
        found = self._closures.get(name)
        if found is not None:
            return found
        files: set[str] = set()
        seen = {name}
        todo = [module]
        while todo:
            current = todo.pop()
            for value in list(vars(current).values()):
                target = value if isinstance(value, ModuleType) else None
                if target is None:
                    try:
                        owner = getattr(value, "__module__", None)
                    except Exception:  # a lazy object whose wrapped value fails to load
                        owner = None
                    target = sys.modules.get(owner) if isinstance(owner, str) else None
                if target is None or target.__name__ in seen:
                    continue
                seen.add(target.__name__)
                path = self.project_file(target)
                if path is not None:
                    files.add(path)
                    todo.append(target)
        found = tuple(sorted(files))
        self._closures[name] = found
        return found


def stable(value: Any) -> str:
    """A repr that is the same in every process: sets sorted, mappings sorted by key
    (``repr`` of a frozenset of strings follows the per-process hash seed)."""
    if is_dataclass(value) and not isinstance(value, type):
        inner = ", ".join(f"{f.name}={stable(getattr(value, f.name))}" for f in fields(value))
        return f"{type(value).__qualname__}({inner})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(sorted(f"{stable(k)}: {stable(v)}" for k, v in value.items())) + "}"
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(stable(v) for v in value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(stable(v) for v in value) + "]"
    return repr(value)


def salt(
    settings: Any,
    rules: Sequence[object],
    parts: Iterable[object],
    sources: Sources,
) -> str:
    """Hash what decides every verdict: this tool's code and rules, Django, Python, the
    settings that shape the graph, the settings module's own files, and ``parts`` (vendor,
    server version, configuration, start-up tables)."""
    import django

    digest = hashlib.sha256()
    package = Path(django_rollout.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package)}={sources.file(str(path))}\n".encode())
    digest.update(f"django={django.__version__} python={sys.version}\n".encode())
    digest.update(f"rules={[type(r).__qualname__ for r in rules]}\n".encode())
    for name in _SETTINGS:
        digest.update(f"{name}={stable(getattr(settings, name, None))}\n".encode())
    engines = {alias: db.get("ENGINE") for alias, db in getattr(settings, "DATABASES", {}).items()}
    digest.update(f"engines={stable(engines)}\n".encode())
    module = sys.modules.get(os.environ.get("DJANGO_SETTINGS_MODULE", ""))
    if module is not None:
        own = sources.project_file(module)
        for file in (*([own] if own else []), *sources.referred(module)):
            digest.update(f"{file}={sources.file(file)}\n".encode())
    for part in parts:
        digest.update(f"{stable(part)}\n".encode())
    return digest.hexdigest()


class Verdicts:
    """The findings of each migration judged on its own, under one salt.

    ``key`` is called for every migration of the plan in order; ``get`` and ``keep`` use the
    keys it returned. Findings are stored located: the paths they show are relative to the
    working directory, which is in the salt. ``save`` keeps the entries of this plan only,
    so the store does not grow with a project's edits.
    """

    def __init__(
        self,
        directory: Path,
        salt: str,
        sources: Sources | None = None,
        locate: Callable[[Finding], Finding] = lambda finding: finding,
        path_of: Callable[[Migration], str | None] = lambda migration: None,
    ) -> None:
        self.directory = directory
        self.salt = salt
        self.sources = sources or Sources()
        self.locate = locate
        self.path_of = path_of
        self.path = directory / f"verdicts-{salt[:24]}.pickle"
        self._old: dict[str, tuple[Finding, ...]] = self._load()
        self.sources.read = 0  # the salt's files were read before the index was known
        self._new: dict[str, tuple[Finding, ...]] = {}
        self._chain: str | None = salt
        self._keys: set[str] = set()
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, tuple[Finding, ...]]:
        try:
            with open(self.path, "rb") as handle:
                stored = pickle.load(handle)
        except Exception:  # missing, truncated, or written by other versions of its classes
            return {}
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            return {}
        if stored.get("salt") != self.salt:
            return {}
        entries = stored.get("entries")
        files = stored.get("files")
        if isinstance(files, dict) and isinstance(stored.get("written"), int):
            self.sources.known = files
            self.sources.known_before = stored["written"] - _RACY_NS
        return entries if isinstance(entries, dict) else {}

    def key(self, migration: Migration) -> str | None:
        """Return the migration's key, chained to every migration before it in the plan;
        None from the first migration without a source file on."""
        path = self.path_of(migration)
        if self._chain is None or path is None or not path.endswith(".py"):
            self._chain = None
            return None
        digest = hashlib.sha256(self._chain.encode())
        digest.update(f"{migration.app_label}.{migration.name}={self.sources.file(path)}".encode())
        module = sys.modules.get(type(migration).__module__)
        if module is not None:
            for referred in self.sources.referred(module):
                digest.update(f"{referred}={self.sources.file(referred)}".encode())
        self._chain = digest.hexdigest()
        self._keys.add(self._chain)
        return self._chain

    def get(self, key: str | None) -> tuple[Finding, ...] | None:
        found = self._old.get(key) if key is not None else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def keep(self, key: str | None, findings: Iterable[Finding]) -> list[Finding]:
        """Store a migration's fresh findings, given their place first (``locate``: a line
        number costs as much as a rule), and return them as stored."""
        kept = [self.locate(f) for f in findings]
        if key is not None:
            self._new[key] = tuple(kept)
        return kept

    def save(self) -> None:
        """Write this plan's entries and the file index, atomically, when something was
        judged or read; a directory that cannot be written means no cache, never an error."""
        if not self._new and not self.sources.read:
            return
        entries = {k: v for k, v in self._old.items() if k in self._keys}
        entries.update(self._new)
        written = time.time_ns()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# written by django-rollout\n*\n", encoding="utf-8")
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        except OSError:
            return
        try:
            with os.fdopen(handle, "wb") as out:
                pickle.dump(
                    {
                        "format": FORMAT,
                        "salt": self.salt,
                        "entries": entries,
                        "files": self.sources.index,
                        "written": written,
                    },
                    out,
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
            os.replace(temporary, self.path)
            self._prune()
        except OSError:  # a full disk: no cache, and no half-written file left behind
            Path(temporary).unlink(missing_ok=True)

    def _prune(self) -> None:
        stores = sorted(
            self.directory.glob("verdicts-*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for stale in stores[_KEPT_STORES:]:
            stale.unlink(missing_ok=True)
