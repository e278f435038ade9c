"""The repair ``doctor`` writes: record changes first, then the migrations to run.

Every action is listed with why; each also has the equivalent a person would type. Django's
``migrate --fake APP X`` going backwards also un-records dependents in other apps, so records
are changed row by row instead. ``apply`` writes every row of ``django_migrations`` to a JSON
backup, changes the records in one transaction, then runs the migrations through Django's
executor, each in its own transaction where it is atomic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django_rollout.errors import RolloutError, first_line

MigrationKey = tuple[str, str]
RECORD = "record"
UNRECORD = "unrecord"
MIGRATE = "migrate"
_ORDER = {UNRECORD: 0, RECORD: 1, MIGRATE: 2}


class RepairError(RolloutError):
    """The repair could not be carried out; the records are as the backup left them."""


@dataclass(frozen=True)
class Repair:
    """One change to ``django_migrations``, or one migration to run."""

    action: str
    app_label: str
    migration: str
    why: str
    # For ``migrate``: run only these operations (finishing a half-applied migration).
    operations: tuple[int, ...] | None = None
    # For ``migrate``: whether ``manage.py migrate APP NAME`` would do exactly this.
    plain_migrate: bool = True

    @property
    def key(self) -> MigrationKey:
        return (self.app_label, self.migration)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "app_label": self.app_label,
            "migration": self.migration,
            "why": self.why,
        }
        if self.operations is not None:
            out["operations"] = list(self.operations)
        out["command"] = self.command()
        return out

    def command(self) -> str:
        """Return what a person would run for this step."""
        app, name = _sql_text(self.app_label), _sql_text(self.migration)
        if self.action == UNRECORD:
            return f"DELETE FROM django_migrations WHERE app = {app} AND name = {name};"
        if self.action == RECORD:
            return (
                "INSERT INTO django_migrations (app, name, applied)"
                f" VALUES ({app}, {name}, CURRENT_TIMESTAMP);"
            )
        if self.operations is not None:
            ops = ", ".join(str(i) for i in self.operations)
            return (
                f"python manage.py sqlmigrate {self.app_label} {self.migration}"
                f"  # run the statements of operations {ops} only, then record it"
            )
        if self.plain_migrate:
            return f"python manage.py migrate {self.app_label} {self.migration}"
        return (
            f"python manage.py sqlmigrate {self.app_label} {self.migration}"
            " | python manage.py dbshell  # then record it"
        )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ordered(repairs: Sequence[Repair], plan: Sequence[MigrationKey]) -> list[Repair]:
    """Sort: un-record, record, then run in plan order; drop exact duplicates."""
    position = {key: n for n, key in enumerate(plan)}
    seen: set[tuple[str, MigrationKey]] = set()
    unique: list[Repair] = []
    for repair in repairs:
        if (repair.action, repair.key) not in seen:
            seen.add((repair.action, repair.key))
            unique.append(repair)
    return sorted(unique, key=lambda r: (_ORDER[r.action], position.get(r.key, -1)))


@dataclass(frozen=True)
class Applied:
    backup: str
    records_changed: int
    migrations_run: tuple[MigrationKey, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "records_changed": self.records_changed,
            "migrations_run": [list(k) for k in self.migrations_run],
        }


def default_backup_path() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"django_migrations-backup-{stamp}.json"


def apply(alias: str, repairs: Sequence[Repair], backup: str) -> Applied:
    """Carry the repair out on the database of ``alias``; return what was done."""
    from django.db import DatabaseError, connections, transaction
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.recorder import MigrationRecorder

    connection = connections[alias]
    recorder = MigrationRecorder(connection)
    table = connection.ops.quote_name(recorder.Migration._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, app, name, applied FROM {table} ORDER BY id")
        rows = cursor.fetchall()
    document = {
        "database": alias,
        "written": datetime.now(UTC).isoformat(),
        "rows": [{"id": r[0], "app": r[1], "name": r[2], "applied": str(r[3])} for r in rows],
        "repair": [r.to_dict() for r in repairs],
    }
    path = Path(backup)
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        raise RepairError(f"cannot write the backup {backup}: {exc.strerror}") from None
    changed = 0
    try:
        with transaction.atomic(using=alias):
            for r in repairs:
                if r.action == UNRECORD:
                    recorder.record_unapplied(r.app_label, r.migration)
                    changed += 1
                elif r.action == RECORD:
                    recorder.record_applied(r.app_label, r.migration)
                    changed += 1
    except DatabaseError as exc:
        raise RepairError(
            f"changing the records failed and was rolled back: {first_line(exc)}"
        ) from None
    run: list[MigrationKey] = []
    executor = MigrationExecutor(connection)
    for r in repairs:
        if r.action != MIGRATE:
            continue
        try:
            _run(executor, r)
        except Exception as exc:  # noqa: BLE001 - the database's or a migration's own error
            raise RepairError(
                f"running {r.app_label}.{r.migration} failed: {first_line(exc)}"
                f" (records changed: {changed}; the backup is {backup})"
            ) from None
        run.append(r.key)
    return Applied(str(path), changed, tuple(run))


def _run(executor: Any, repair: Repair) -> None:
    """Run a migration, or only some of its operations, and record it as applied.

    Django's executor is used directly (not ``migrate``): ``migrate`` refuses a history
    with a recorded dependent of an unrecorded migration, which is what a repair fixes.
    """
    loader = executor.loader
    key = repair.key
    migration = loader.graph.nodes[key]
    state = loader.project_state(key, at_end=False)
    if repair.operations is None:
        executor.apply_migration(state, migration)
        return
    connection = executor.connection
    wanted = set(repair.operations)
    with connection.schema_editor(atomic=migration.atomic) as editor:
        for index, operation in enumerate(migration.operations):
            before = state.clone()
            operation.state_forwards(migration.app_label, state)
            if index in wanted:
                operation.database_forwards(migration.app_label, editor, before, state)
    executor.recorder.record_applied(*key)
