"""Read S0 from a database: the rows of ``django_migrations`` and each table's row count.

This package is the only code that opens connections. A database is named by a Django alias
(``default``) or a URL (``postgresql://user@host:5432/name``, ``sqlite:///path/db.sqlite3``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from django_rollout.errors import DatabaseUnavailableError, DeployedStateError, first_line
from django_rollout.graph.deployed import Deployed

MigrationKey = tuple[str, str]


class _Cursor(Protocol):
    def execute(self, sql: str, params: Any = ...) -> Any: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...


def _is_url(target: str) -> bool:
    return "://" in target


@contextmanager
def _url_cursor(url: str) -> Iterator[tuple[str, _Cursor, dict[str, Any]]]:
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme in ("postgres", "postgresql", "pgsql"):
        import psycopg

        try:
            conn = psycopg.connect(url.replace("pgsql://", "postgresql://"), connect_timeout=10)
        except psycopg.Error as exc:
            first = first_line(exc)
            raise DatabaseUnavailableError(f"cannot connect to {safe_url(url)}: {first}") from None
        try:
            with conn.cursor() as cursor:
                server = {"vendor": "postgresql", "version": _pg_version(conn.info.server_version)}
                yield "postgresql", cursor, server
        finally:
            conn.close()
    elif scheme == "sqlite":
        path = unquote(parsed.path)
        if parsed.netloc:  # sqlite://relative/path
            path = parsed.netloc + path
        try:
            lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(f"cannot open {path}: {exc}") from None
        try:
            yield "sqlite", lite.cursor(), {"vendor": "sqlite", "version": sqlite3.sqlite_version}
        finally:
            lite.close()
    else:
        raise DeployedStateError(f"unsupported database URL scheme {scheme!r} in {safe_url(url)}")


def safe_url(url: str) -> str:
    """Return ``url`` with its password, if any, masked."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def _pg_version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}" if number >= 100000 else str(number)


def server_version(connection: Any) -> str | None:
    """An open Django connection's server version as its vendor spells it ("15.20"), or
    None for a vendor it cannot tell."""
    if connection.vendor == "postgresql":
        return _pg_version(connection.pg_version)
    if connection.vendor == "sqlite":
        return sqlite3.sqlite_version
    return None


@contextmanager
def _alias_cursor(alias: str) -> Iterator[tuple[str, _Cursor, dict[str, Any]]]:
    from django.db import DatabaseError, connections
    from django.utils.connection import ConnectionDoesNotExist

    try:
        connection = connections[alias]
    except ConnectionDoesNotExist:
        raise DeployedStateError(
            f"--database {alias}: no such database alias in settings"
        ) from None
    try:
        with connection.cursor() as cursor:
            version = server_version(connection) or ""
            yield connection.vendor, cursor, {"vendor": connection.vendor, "version": version}
    except DatabaseError as exc:
        first = first_line(exc)
        raise DatabaseUnavailableError(f"cannot use database {alias!r}: {first}") from None


def _cursor(target: str) -> Any:
    return _url_cursor(target) if _is_url(target) else _alias_cursor(target)


def _applied(vendor: str, cursor: _Cursor, target: str) -> list[MigrationKey]:
    try:
        cursor.execute("SELECT app, name FROM django_migrations")
    except Exception as exc:  # any driver's "relation does not exist"
        raise DeployedStateError(
            f"{safe_url(target)} has no django_migrations table: it is not a Django database"
            f" ({type(exc).__name__})"
        ) from None
    return [(str(app), str(name)) for app, name in cursor.fetchall()]


def _row_counts(vendor: str, cursor: _Cursor) -> dict[str, int]:
    if vendor == "postgresql":
        # Planner statistics, not count(*): a snapshot must be cheap on a production replica.
        # reltuples is -1 for a never-analysed table (PG 14+); fall back to the live tuples.
        cursor.execute(
            """
            SELECT c.relname,
                   GREATEST(c.reltuples::bigint, COALESCE(s.n_live_tup, 0))
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
            WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(current_schemas(false))
            """
        )
        return {str(name): max(int(rows), 0) for name, rows in cursor.fetchall()}
    if vendor == "sqlite":
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = [str(row[0]) for row in cursor.fetchall() if not str(row[0]).startswith("sqlite_")]
        counts: dict[str, int] = {}
        for name in names:
            cursor.execute(f'SELECT count(*) FROM "{name}"')
            counts[name] = int(cursor.fetchall()[0][0])
        return counts
    return {}


def read_deployed(target: str) -> Deployed:
    """Return S0 as a database has it: applied migrations and table sizes."""
    with _cursor(target) as (vendor, cursor, server):
        applied = _applied(vendor, cursor, target)
        counts = _row_counts(vendor, cursor)
    return Deployed(
        source=f"database:{safe_url(target)}",
        applied=frozenset(applied),
        row_counts=counts,
        server=server,
    )
