"""Copy a real database into a scratch database, reading the source only.

A source is a Django alias or a URL (``postgresql://user:pw@host:5432/name``,
``sqlite:///path/db.sqlite3``). PostgreSQL is copied with ``pg_dump | pg_restore`` by
default: it only reads, so it works from a replica, and the scratch database may live on
another server. ``template=True`` asks the source's server for ``CREATE DATABASE ... TEMPLATE``
instead: faster, but PostgreSQL refuses it while any other session is connected to the
source, blocks new connections to it for the time of the copy, and needs the CREATEDB
privilege on the source's server. SQLite is copied with SQLite's online backup, which reads a
consistent snapshot even while the application writes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from django_rollout.db.state import safe_url
from django_rollout.errors import DatabaseUnavailableError, DeployedStateError

# The table that marks a Django database; a source without it is refused before anything
# is made.
RECORDER_TABLE = "django_migrations"


@dataclass(frozen=True)
class Source:
    """A database to copy: its vendor, Django-style settings and a label without password."""

    target: str
    vendor: str
    settings: dict[str, Any] = field(hash=False, compare=False)
    label: str
    template: bool = False

    @property
    def method(self) -> str:
        if self.vendor == "sqlite":
            return "sqlite backup"
        return "CREATE DATABASE ... TEMPLATE" if self.template else "pg_dump | pg_restore"


def resolve(target: str, *, template: bool = False) -> Source:
    """Return the source that ``target`` (an alias or a URL) names, without connecting."""
    if "://" in target:
        settings = _url_settings(target)
        label = safe_url(target)
        vendor = "sqlite" if settings["ENGINE"].endswith("sqlite3") else "postgresql"
    else:
        from django.db import connections
        from django.utils.connection import ConnectionDoesNotExist

        try:
            vendor = connections[target].vendor
        except ConnectionDoesNotExist:
            raise DeployedStateError(
                f"--from-database {target}: no such database alias in settings"
            ) from None
        settings = dict(connections.settings[target])
        label = target
    if vendor not in ("postgresql", "sqlite"):
        raise DeployedStateError(
            f"--from-database copies PostgreSQL or SQLite; {label} is {vendor}"
        )
    if template and vendor != "postgresql":
        raise DeployedStateError("--template copies a PostgreSQL database; the source is SQLite")
    return Source(target=target, vendor=vendor, settings=settings, label=label, template=template)


def _url_settings(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme in ("postgres", "postgresql", "pgsql"):
        # libpq also takes the host (a socket directory, say) and port as query parameters.
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": query.get("host") or unquote(parsed.hostname or ""),
            "PORT": query.get("port") or str(parsed.port or ""),
        }
    if scheme == "sqlite":
        path = unquote(parsed.path)
        if parsed.netloc:  # sqlite://relative/path
            path = parsed.netloc + path
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    raise DeployedStateError(f"unsupported database URL scheme {scheme!r} in {safe_url(url)}")


def _check_sqlite(source: Source) -> None:
    """Refuse a SQLite source that is missing or holds no ``django_migrations``."""
    path = str(source.settings["NAME"])
    if not os.path.isfile(path):
        raise DatabaseUnavailableError(f"--from-database {source.label}: no such file {path}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as lite:
            found = lite.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [RECORDER_TABLE]
            ).fetchone()
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(f"cannot read {path}: {exc}") from None
    if not found:
        raise DeployedStateError(_not_django(source))


def copy_sqlite(source: Source, destination: str) -> None:
    """Copy the SQLite file of ``source`` to ``destination`` with SQLite's online backup."""
    _check_sqlite(source)
    reader = sqlite3.connect(f"file:{source.settings['NAME']}?mode=ro", uri=True)
    try:
        writer = sqlite3.connect(destination)
        try:
            reader.backup(writer)
        finally:
            writer.close()
    finally:
        reader.close()


def _not_django(source: Source) -> str:
    return (
        f"--from-database {source.label} has no {RECORDER_TABLE} table: it is not a Django database"
    )


def check_postgresql(source: Source, cursor: Any) -> None:
    """Refuse a PostgreSQL source without ``django_migrations`` (``cursor`` on the source)."""
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [RECORDER_TABLE])
    (found,) = cursor.fetchone()
    if not found:
        raise DeployedStateError(_not_django(source))


def dump_and_restore(source: Source, destination: dict[str, Any]) -> None:
    """Copy ``source`` into the (empty) database of ``destination`` settings.

    ``pg_dump`` writes the custom format to a pipe that ``pg_restore`` reads, without owners
    or grants (the scratch database belongs to whoever runs the rehearsal), in one
    transaction that stops at the first error.
    """
    dump_bin, restore_bin = _binary("pg_dump"), _binary("pg_restore")
    dump = subprocess.Popen(
        [dump_bin, "--format=custom", "--no-owner", "--no-privileges", "--no-sync"],
        env=_libpq_env(source.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert dump.stdout is not None
    restore = subprocess.run(
        [
            restore_bin,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={destination['NAME']}",
        ],
        env=_libpq_env(destination),
        stdin=dump.stdout,
        capture_output=True,
        check=False,
    )
    dump.stdout.close()
    dumped_err = dump.stderr.read() if dump.stderr else b""
    dumped = dump.wait()
    if dumped != 0:
        raise DatabaseUnavailableError(
            f"pg_dump of {source.label} failed: {_last_line(dumped_err)}"
            " (a pg_dump at least as new as the server is needed; or try --template)"
        )
    if restore.returncode != 0:
        raise DatabaseUnavailableError(
            f"pg_restore into the scratch database failed: {_last_line(restore.stderr)}"
        )


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DatabaseUnavailableError(
            f"{name} is not on PATH: install PostgreSQL's client programs, or use --template"
        )
    return found


def _libpq_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment that points libpq's programs at the database of ``settings``."""
    env = dict(os.environ)
    for key, variable in (
        ("NAME", "PGDATABASE"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
    ):
        value = settings.get(key)
        if value:
            env[variable] = str(value)
        else:
            env.pop(variable, None)
    options = settings.get("OPTIONS") or {}
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "service", "passfile"):
        if options.get(key):
            env[f"PG{key.upper()}"] = str(options[key])
    return env


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
