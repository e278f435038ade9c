"""Throwaway databases for rehearsals: created with a unique name, always dropped.

A scratch database lives on the server of a configured Django alias (PostgreSQL), or in a
temporary file (SQLite). It is registered as its own Django connection alias for the time
it lives, and dropped when the ``with`` block ends: on success, on an error and on Ctrl-C
(``KeyboardInterrupt`` and SIGTERM unwind through it). ``keep=True`` leaves it in place and
says where it is.

While it lives, the source alias and ``default`` lead to it too: a data migration that
writes through ``Model.objects`` rather than ``schema_editor.connection.alias`` (most do),
and a model's ``save()`` in new-code traffic, go to the default alias, and must reach the
scratch database, never the user's own. In the thread that creates it, those aliases are
the very same connection (one session, one transaction, as under ``migrate``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from django_rollout.db.cluster import ephemeral_cluster, find_binaries, terminate_as_interrupt
from django_rollout.db.copy import Source, check_postgresql, copy_sqlite, dump_and_restore
from django_rollout.errors import DatabaseUnavailableError, first_line

PREFIX = "rollout_scratch"


@dataclass(frozen=True)
class Scratch:
    """A scratch database: the Django alias that reaches it, its name and vendor."""

    alias: str
    name: str
    vendor: str
    keep: bool = False
    # The alias whose server holds it, or what was started for it.
    server: str = "default"
    # Kept on an ephemeral cluster: the shell line that stops and removes that cluster.
    left_running: str | None = None


def scratch_name(prefix: str = PREFIX) -> str:
    """Return a database name no other run uses: the prefix, this process and 8 random hex."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


@contextmanager
def scratch_database(
    source: str = "default",
    *,
    keep: bool = False,
    copy: Source | None = None,
    postgresql: bool = False,
) -> Iterator[Scratch]:
    """Create a scratch database next to the database of alias ``source``; drop it after.

    With ``copy``, the scratch database starts as a copy of that database (see
    ``django_rollout.db.copy``): SQLite always into a temporary file; PostgreSQL with
    ``pg_dump | pg_restore`` onto the server of ``source``, or as a TEMPLATE copy on the
    copied database's own server.

    When PostgreSQL is wanted (``postgresql``, or a PostgreSQL ``copy``) and ``source`` is
    no PostgreSQL server, an ephemeral local cluster is started for the scratch database
    (``django_rollout.db.cluster``) and removed with it. Without the server binaries, a
    PostgreSQL copy is refused, and otherwise the scratch database is SQLite.
    """
    from django.db import connections
    from django.utils.connection import ConnectionDoesNotExist

    try:
        vendor = connections[source].vendor
    except ConnectionDoesNotExist:
        raise DatabaseUnavailableError(f"no database alias {source!r} in settings") from None
    copies_postgresql = copy is not None and copy.vendor == "postgresql" and not copy.template
    wanted = (postgresql and copy is None) or copies_postgresql
    binaries = find_binaries() if wanted and vendor != "postgresql" else None
    if binaries is None:
        if wanted and copies_postgresql and vendor != "postgresql":
            assert copy is not None
            raise DatabaseUnavailableError(
                f"--from-database {copy.label} is PostgreSQL: the copy needs a PostgreSQL"
                f" server, {source!r} is {vendor} and no server binaries (initdb, pg_ctl) are"
                " installed to start one (name a server with --scratch ALIAS)"
            )
        with _scratch_on(source, {source}, keep, copy) as scratch:
            yield scratch
        return
    with ephemeral_cluster(keep=keep, binaries=binaries) as cluster:
        server = f"{PREFIX}_cluster_{os.getpid()}"
        connections.settings[server] = _completed(cluster.settings())
        try:
            with _scratch_on(server, {source}, keep, copy) as scratch:
                yield replace(
                    scratch,
                    server=f"an ephemeral PostgreSQL {cluster.version} cluster",
                    left_running=cluster.stop_command() if keep else None,
                )
        finally:
            _forget(server)


@contextmanager
def _scratch_on(source: str, also: set[str], keep: bool, copy: Source | None) -> Iterator[Scratch]:
    """Create the scratch database on the server of alias ``source``; lead the aliases of
    ``also``, ``source`` and ``default`` to it while it lives; drop it after."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.utils.connection import ConnectionDoesNotExist

    try:
        origin = connections[source]
    except ConnectionDoesNotExist:
        raise DatabaseUnavailableError(f"no database alias {source!r} in settings") from None
    settings = dict(origin.settings_dict)
    vendor = origin.vendor
    name = scratch_name()
    alias = name
    directory: str | None = None
    server = source  # the alias whose server holds the scratch database
    if copy is not None and copy.vendor == "sqlite":
        vendor = "sqlite"
        settings = _completed({"ENGINE": "django.db.backends.sqlite3"})
    elif copy is not None and copy.template:
        server = f"{name}_source"
        connections.settings[server] = _completed(copy.settings)
        settings, vendor = dict(connections.settings[server]), "postgresql"
    try:
        if vendor == "postgresql":
            _create_postgresql(server, name, copy)
            settings["NAME"] = name
        elif vendor == "sqlite":
            directory = tempfile.mkdtemp(prefix=f"{PREFIX}_")
            settings["NAME"] = os.path.join(directory, f"{name}.sqlite3")
        else:
            raise DatabaseUnavailableError(
                f"rehearsals run on PostgreSQL or SQLite; {source!r} is {vendor}"
            )
    except BaseException:
        if server != source:
            _forget(server)
        raise
    settings.setdefault("TEST", {})
    connections.settings[alias] = settings
    where = copy.label if copy is not None and copy.template else source
    scratch = Scratch(alias=alias, name=settings["NAME"], vendor=vendor, keep=keep, server=where)
    redirected = {a: connections.settings[a] for a in {source, DEFAULT_DB_ALIAS, *also}}
    if copy is not None and copy.target in connections.settings:
        redirected[copy.target] = connections.settings[copy.target]
    try:
        for other in redirected:
            _forget(other, keep_settings=True)
            connections.settings[other] = dict(settings)
            # In this thread they are the scratch connection itself, as ``migrate`` has one
            # connection: a data migration that writes through ``Model.objects`` must see,
            # and not wait behind, the locks its own migration's transaction holds. Other
            # threads (traffic) get sessions of their own from the settings.
            connections[other] = connections[alias]
        with terminate_as_interrupt():
            if copy is not None and vendor == "postgresql" and not copy.template:
                dump_and_restore(copy, settings)
            elif copy is not None and vendor == "sqlite":
                copy_sqlite(copy, settings["NAME"])
            yield scratch
    finally:
        _forget(alias)
        for other, own in redirected.items():
            _forget(other, keep_settings=True)
            connections.settings[other] = own
        if not keep:
            if vendor == "postgresql":
                _drop_postgresql(server, name)
            elif directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        if server != source:
            _forget(server)


def _create_postgresql(server: str, name: str, copy: Source | None) -> None:
    """Create the scratch database on the server of alias ``server``; refuse a copy whose
    source is not a Django database before anything is made."""
    from django.db import DatabaseError, connections

    template = copy is not None and copy.template
    try:
        if copy is not None:
            own = copy.target if copy.target in connections.settings else None
            with _source_cursor(copy, server if template else own) as cursor:
                check_postgresql(copy, cursor)
            if template:  # PostgreSQL refuses a TEMPLATE that has sessions: ours included
                connections.close_all()
        # Django warns when it falls back from the 'postgres' database; the error below
        # says what matters if neither answers.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with connections[server]._nodb_cursor() as cursor:
                if template:
                    assert copy is not None
                    source_name = connections[server].ops.quote_name(copy.settings["NAME"])
                    cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE {source_name}')
                else:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    except DatabaseError as exc:
        first = first_line(exc)
        what = f"a TEMPLATE copy of {copy.label}" if template and copy else "a scratch database"
        raise DatabaseUnavailableError(f"cannot create {what} on {server!r}: {first}") from None


@contextmanager
def _source_cursor(copy: Source, alias: str | None) -> Iterator[Any]:
    """A cursor on the copied database: through ``alias`` or a connection of its own."""
    from django.db import connections

    if alias is not None:
        with connections[alias].cursor() as cursor:
            yield cursor
        return
    import psycopg

    env = copy.settings
    try:
        conn = psycopg.connect(
            dbname=env["NAME"],
            user=env.get("USER") or None,
            password=env.get("PASSWORD") or None,
            host=env.get("HOST") or None,
            port=env.get("PORT") or None,
            connect_timeout=10,
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to {copy.label}: {first_line(exc)}"
        ) from None
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def _completed(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the defaults Django gives every entry of DATABASES."""
    from django.db import connections

    return dict(connections.configure_settings({"default": dict(settings)})["default"])


def _forget(alias: str, keep_settings: bool = False) -> None:
    """Close and drop this thread's connection of ``alias`` (and its settings)."""
    from django.db import connections

    # Closing a broken connection must not hide the error that broke it.
    with suppress(Exception):
        connections[alias].close()
    with suppress(AttributeError, KeyError):
        del connections[alias]
    if not keep_settings:
        connections.settings.pop(alias, None)


def _drop_postgresql(source: str, name: str) -> None:
    from django.db import connections

    with connections[source]._nodb_cursor() as cursor:
        # Asked on this cursor: the source alias's own database may not exist at all.
        cursor.execute("SHOW server_version_num")
        (version,) = cursor.fetchone()
        # WITH (FORCE) (PostgreSQL 13+) ends sessions left behind, traffic threads included.
        if int(version) >= 130000:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
