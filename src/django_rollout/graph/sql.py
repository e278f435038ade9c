"""Collect the SQL Django runs for one migration, without a database server.

``collect_migration_sql`` drives each operation through a collecting schema
editor the way ``Migration.apply(collect_sql=True)`` does, but records which
operation emitted each statement and leaves out the ``--`` comment lines. The
statements are byte-equal to ``sqlmigrate`` on a live server of the pinned
version, with two deliberate differences, both where Django's real run differs
from ``sqlmigrate`` (which introspects the database *before* the migration):

* introspection answers from the state just before each operation;
* after ``DROP IDENTITY`` no identity sequence is left to drop or alter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.migration import Migration
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

from django_rollout.errors import RolloutError
from django_rollout.graph.offline import (
    OfflineIntrospectionError,
    OfflinePostgresSchemaEditor,
    newest_known_postgresql,
    offline_connection,
    oldest_supported_postgresql,
)

__all__ = [
    "CollectedSQL",
    "Statement",
    "collect_migration_sql",
    "newest_known_postgresql",
    "offline_connection",
    "oldest_supported_postgresql",
]


@dataclass(frozen=True)
class Statement:
    """One statement exactly as Django's ``collect_sql`` gives it."""

    sql: str
    operation_index: int | None
    deferred: bool


@dataclass(frozen=True)
class CollectedSQL:
    """The statements of one migration, forwards, in the order Django runs them."""

    statements: tuple[Statement, ...]
    error: str | None = None


def collect_migration_sql(
    migration: Migration,
    state_before: ProjectState,
    *,
    connection: BaseDatabaseWrapper | None = None,
    vendor: str = "postgresql",
    server_version: tuple[int, ...] | None = None,
    in_place: bool = False,
) -> CollectedSQL:
    """Return the statements Django runs for ``migration`` applied on ``state_before``.

    Deferred statements (FK constraints, indexes) come last with
    ``operation_index`` None. Never raise for a migration that cannot be
    collected: report why in ``error`` and keep what was produced before it.
    ``state_before`` is not mutated, unless ``in_place``: then it is advanced through the
    migration as Django's ``collect_sql`` advances its one state (the caller carries it to
    the next migration; after an error it is half-advanced).
    """
    if connection is None:
        connection = offline_connection(vendor, server_version)
    statements: list[Statement] = []
    index: int | None = None
    try:
        state = state_before if in_place else state_before.clone()
        with _registered(connection), _sqlite_replica(connection, state):
            editor = connection.schema_editor(collect_sql=True, atomic=False)
            with editor:
                for index, operation in enumerate(migration.operations):
                    before = len(editor.collected_sql)
                    state = _run_operation(migration.app_label, operation, editor, state)
                    statements.extend(
                        Statement(sql, index, False) for sql in editor.collected_sql[before:]
                    )
                index = None
                emitted = len(editor.collected_sql)
            statements.extend(Statement(sql, None, True) for sql in editor.collected_sql[emitted:])
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
        return CollectedSQL(tuple(statements), _describe_failure(migration, index, exc))
    return CollectedSQL(tuple(statements))


def _run_operation(
    app_label: str, operation: Operation, editor: Any, state: ProjectState
) -> ProjectState:
    """Apply one operation to ``state`` and collect its SQL; return the new state."""
    if not operation.reduces_to_sql:
        # RunPython: Django's collect_sql skips it without advancing the state.
        return state
    old_state = state.clone()
    operation.state_forwards(app_label, state)
    if isinstance(editor, OfflinePostgresSchemaEditor):
        editor.rollout_state = old_state
        if _is_create_extension(operation):
            _create_extension(app_label, operation, editor)
            return state
        _note_collation(operation, editor)
    operation.database_forwards(app_label, editor, old_state, state)
    return state


def _is_create_extension(operation: Operation) -> bool:
    try:
        from django.contrib.postgres.operations import CreateExtension
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(operation, CreateExtension)


def _create_extension(app_label: str, operation: Any, editor: Any) -> None:
    """Emit CreateExtension's statement, assuming the extension is not installed yet.

    Django asks pg_extension first and registers type handlers on the live
    connection; the state does not record extensions, and the statement is
    idempotent (IF NOT EXISTS), so emit it as a fresh database would get it.
    """
    if not router.allow_migrate(editor.connection.alias, app_label):
        return
    editor.execute(f"CREATE EXTENSION IF NOT EXISTS {editor.quote_name(operation.name)}")


def _note_collation(operation: Operation, editor: OfflinePostgresSchemaEditor) -> None:
    """Remember collations this migration creates, for the ``_like`` index decision."""
    if type(operation).__name__ == "CreateCollation" and hasattr(operation, "deterministic"):
        editor.rollout_collations[operation.name] = bool(operation.deterministic)


@contextmanager
def _registered(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Make ``connections[alias]`` this connection in this thread while collecting.

    Operations ask ``Options.can_migrate(alias)``, which looks the alias up in
    ``django.db.connections``; an offline alias is not in DATABASES.
    """
    storage = connections._connections
    missing = object()
    previous = getattr(storage, connection.alias, missing)
    setattr(storage, connection.alias, connection)
    try:
        yield
    finally:
        if previous is missing:
            delattr(storage, connection.alias)
        else:
            setattr(storage, connection.alias, previous)


@contextmanager
def _sqlite_replica(connection: BaseDatabaseWrapper, state: ProjectState) -> Iterator[None]:
    """Build the before-state's tables in an in-memory SQLite database, for introspection.

    Only for the in-memory connections ``offline_connection("sqlite")`` gives;
    other connections are used as they are.
    """
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield
        return
    connection.close()  # a fresh in-memory database: nothing from an earlier call
    try:
        with connection.schema_editor() as editor:
            for model in state.apps.get_models():
                if model._meta.managed and not model._meta.proxy:
                    editor.create_model(model)
        yield
    finally:
        connection.close()


def _describe_failure(migration: Migration, index: int | None, exc: BaseException) -> str:
    """Say in one line why the SQL could not be produced offline."""
    if isinstance(exc, (RolloutError, OfflineIntrospectionError)):
        why = str(exc)
    else:
        why = f"{type(exc).__name__}: {exc}"
    why = " ".join(why.split())
    if index is None:
        return f"{migration.app_label}.{migration.name}: {why}"
    operation = migration.operations[index]
    return (
        f"{migration.app_label}.{migration.name} operation {index} ({operation.describe()}): {why}"
    )
