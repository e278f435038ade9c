"""Django's own SQL for a list of operations, run on a real PostgreSQL schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import migrations
from django.db.migrations.state import ProjectState

from django_rollout.graph.sql import collect_migration_sql


def django_sql(operations: list[Any], state: ProjectState, app_label: str = "shop") -> list[str]:
    """The statements Django runs for ``operations`` on ``state``, which moves past them."""
    migration = migrations.Migration("0002_change", app_label)
    migration.operations = operations
    collected = collect_migration_sql(migration, state, in_place=True)
    assert collected.error is None
    return [s.sql for s in collected.statements]


@contextmanager
def pg_schema() -> Iterator[Any]:
    """An autocommit connection whose search path is a new, empty schema, dropped after."""
    try:
        conn = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    schema = f"rollout_sql_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"SET search_path = {schema}")
    try:
        yield conn
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
