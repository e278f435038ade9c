"""What a rule is told: OperationContext, MigrationContext, ProjectContext, and the unit.

The deploy unit is judged by its net effect on S0 (see ARCHITECTURE.md). ``Lineage`` follows
each model and field of the unit back to the table and column it descends from in S0, through
renames, so that "added nullable, backfilled, then made NOT NULL inside the unit" is still a
column that did not exist in S0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db import migrations
from django.db.migrations.operations.base import Operation
from django.db.migrations.operations.models import ModelOperation
from django.db.migrations.state import ProjectState

from django_rollout.conf import Config
from django_rollout.graph.model import ModelKey, ModelView, related_key, view

_QUOTED = re.compile(r'["`]([^"`]+)["`]')

if TYPE_CHECKING:
    from django.db.migrations.loader import MigrationLoader

    from django_rollout.vendors.base import VendorFacts

MigrationKey = tuple[str, str]  # (app_label, migration_name)


def same_target_table(
    state: ProjectState, app_label: str, model: ModelView | None, old: Any, new: Any
) -> bool:
    """Whether two relational fields of ``model`` point at one table: a relation moved to a
    model that took the old one's table over (an app split, in state only) is the same
    foreign key, and Django's schema editor emits nothing for it (``_field_should_be_altered``
    drops ``to`` when the targets' tables match)."""
    if old is None or not old.is_relation or not new.is_relation or new.many_to_many:
        return False
    tables = []
    for f in (old, new):
        if f.remote_field.model == "self":
            target = model
        else:
            key = related_key(f, app_label)
            target = None if key is None else view(state, key)
        tables.append(None if target is None else target.db_table)
    return tables[0] is not None and tables[0] == tables[1]


def target_keys(operation: Operation, app_label: str) -> tuple[ModelKey | None, ModelKey | None]:
    """Return the model key an operation acts on, before and after it runs."""
    if isinstance(operation, migrations.RenameModel):
        return (app_label, operation.old_name_lower), (app_label, operation.new_name_lower)
    model_name = getattr(operation, "model_name_lower", None)
    if model_name is None:
        if not isinstance(operation, ModelOperation):
            return None, None
        model_name = operation.name_lower
    key = (app_label, model_name)
    return key, key


class Lineage:
    """Follow the unit's models and fields back to their S0 table and column.

    A model is *touched* the first time an operation of the unit acts on it; its view at that
    moment is its S0 view, since nothing in the unit changed it before. Untouched models are
    still as they were in S0.
    """

    def __init__(self, state: ProjectState) -> None:
        self._state = state
        self._origin: dict[ModelKey, ModelKey | None] = {}
        self._s0: dict[ModelKey, ModelView | None] = {}
        self._fields: dict[ModelKey, dict[str, str | None]] = {}

    def touch(self, key: ModelKey) -> None:
        if key in self._origin:
            return
        current = view(self._state, key)
        self._origin[key] = key if current is not None else None
        self._s0[key] = current

    def origin(self, key: ModelKey) -> ModelKey | None:
        """Return the S0 key the current model descends from, None if it is new in the unit."""
        if key in self._origin:
            return self._origin[key]
        return key if key in self._state.models else None

    def s0_model(self, key: ModelKey) -> ModelView | None:
        origin = self.origin(key)
        if origin is None:
            return None
        if origin in self._s0:
            return self._s0[origin]
        return view(self._state, origin)

    def s0_field_name(self, key: ModelKey, field_name: str) -> str | None:
        """Return the S0 name of the field that ``key.field_name`` descends from, or None."""
        names = self._fields.get(key, {})
        if field_name in names:
            return names[field_name]
        s0 = self.s0_model(key)
        return field_name if s0 is not None and field_name in s0.fields else None

    def s0_models(self) -> list[ModelView]:
        """Return every model of S0 that still owns a table or was touched by the unit."""
        seen: dict[ModelKey, ModelView] = {}
        for key, captured in self._s0.items():
            if captured is not None:
                seen[key] = captured
        for key in self._state.models:
            if key not in self._origin and key not in seen:
                current = view(self._state, key)
                if current is not None:
                    seen[key] = current
        return list(seen.values())

    def s0_model_for_table(self, db_table: str | None) -> ModelView | None:
        """Return the S0 model that owns ``db_table`` (as RunSQL names it), or None."""
        if not db_table:
            return None
        wanted = db_table.lower()
        for model in self.s0_models():
            if model.has_table and model.db_table.lower() == wanted:
                return model
        return None

    def record(self, operation: Operation, app_label: str) -> None:
        """Update lineage after ``operation`` changed the models the code sees."""
        before, after = target_keys(operation, app_label)
        if isinstance(operation, migrations.CreateModel) and after is not None:
            self._origin[after] = None
            self._fields[after] = {name: None for name, _ in operation.fields}
        elif isinstance(operation, migrations.DeleteModel) and before is not None:
            self._origin[before] = None
            self._fields.pop(before, None)
        elif isinstance(operation, migrations.RenameModel) and before and after:
            self._origin[after] = self.origin(before)
            if after != before:
                self._origin[before] = None
                if before in self._s0:
                    self._s0[after] = self._s0[before]
            self._fields[after] = self._fields.pop(before, {})
        elif isinstance(operation, migrations.AddField) and after is not None:
            self._fields.setdefault(after, {})[operation.name] = None
        elif isinstance(operation, migrations.RemoveField) and before is not None:
            self._fields.setdefault(before, {})[operation.name] = None
        elif isinstance(operation, migrations.RenameField) and before is not None:
            names = self._fields.setdefault(before, {})
            names[operation.new_name] = self.s0_field_name(before, operation.old_name)
            names[operation.old_name] = None


@dataclass(frozen=True)
class DataStep:
    """A data operation (RunPython or RunSQL) already walked, deployed or in the unit."""

    app_label: str
    migration: str
    operation: Operation
    deployed: bool


@dataclass
class Unit:
    """The deploy unit being judged, and the facts about S0 that rules may read."""

    state: ProjectState
    lineage: Lineage
    config: Config
    vendor: str
    server_version: tuple[int, ...]
    row_counts: Mapping[str, int] | None = None
    real_apps: frozenset[str] = frozenset()
    # Every RunPython/RunSQL walked before the current operation, oldest first: lets a rule
    # see that a column was backfilled by an earlier migration, deployed or not.
    history: Sequence[DataStep] = ()
    # The tables the project's start-up queries named (``AppConfig.ready()`` reading or
    # writing them in every process, ``migrate`` included); None when start-up could not
    # reach a database, so which tables it touches is unknown.
    startup_tables: frozenset[str] | None = frozenset()

    def rows(self, db_table: str) -> int | None:
        """Return the row count S0 reported for a table, or None when S0 has no counts."""
        if self.row_counts is None:
            return None
        return self.row_counts.get(db_table, 0)

    def model_now(self, key: ModelKey) -> ModelView | None:
        return view(self.state, key)

    def in_s0(self, key: ModelKey) -> bool:
        """Return True when the model's table existed in S0 (renames followed)."""
        if key[0] in self.real_apps:
            return True
        s0 = self.lineage.s0_model(key)
        return s0 is not None and s0.has_table

    @cached_property
    def facts(self) -> VendorFacts:
        from django_rollout.vendors import facts_for

        return facts_for(self.vendor)

    @property
    def connection(self) -> Any:
        """A DatabaseWrapper of the vendor that never connects (for ``db_type()``), or None."""
        from django_rollout.graph.offline import shared_offline_connection

        return shared_offline_connection(self.vendor, tuple(self.server_version))

    @property
    def pg_major(self) -> int:
        return self.server_version[0] if self.server_version else 0


@dataclass(frozen=True)
class OperationContext:
    """One operation of a judged migration, with its before/after and the S0 facts.

    ``database`` is False for state-only operations (``SeparateDatabaseAndState``'s
    state_operations); ``state`` is False for database-only ones. ``unit.state`` is the state
    just after this operation only while the rule runs: rules must not keep it.
    """

    app_label: str
    migration: migrations.Migration
    index: int
    operation: Operation
    before: ModelView | None
    after: ModelView | None
    unit: Unit
    database: bool = True
    state: bool = True
    nesting: tuple[tuple[str, int], ...] = ()
    # S0 facts of the target, taken before the operation changed the lineage (a RemoveField
    # must still see the field the old release has): the S0 model, and for each field name
    # of the target before or after the operation, the S0 field name it descends from.
    s0: ModelView | None = None
    s0_names: Mapping[str, str | None] = field(default_factory=dict)
    # What rules derive from this context and share (the lock rules' statements and locks).
    # Not an init field: ``dataclasses.replace`` (a shadow unit) starts with an empty one.
    memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def migration_name(self) -> str:
        return str(self.migration.name)

    @property
    def atomic(self) -> bool:
        return bool(getattr(self.migration, "atomic", True))

    @property
    def key(self) -> ModelKey | None:
        model = self.after or self.before
        return model.key if model is not None else None

    @property
    def model(self) -> ModelView | None:
        """The target model after the operation, or before it when it was deleted."""
        return self.after or self.before

    @property
    def s0_model(self) -> ModelView | None:
        """The target model as the old release sees it, or None if it is new in the unit."""
        return self.s0

    @property
    def table_in_s0(self) -> bool:
        """True when the target table existed in S0: it has rows and live readers/writers."""
        s0 = self.s0_model
        return s0 is not None and s0.has_table

    def s0_field(self, field_name: str) -> Any | None:
        """Return the S0 field that ``field_name`` of the target model descends from.

        ``field_name`` is a name the target has before or after the operation (after a
        RenameField, both the old and the new name lead to the S0 field).
        """
        if self.s0 is None:
            return None
        s0_name = self.s0_names.get(field_name)
        return None if s0_name is None else self.s0.fields.get(s0_name)

    def same_target_table(self, old: Any, new: Any) -> bool:
        """Whether two relational fields of the target model point at one table (see
        :func:`same_target_table`)."""
        return same_target_table(self.unit.state, self.app_label, self.model, old, new)

    def rows(self) -> int | None:
        s0 = self.s0_model
        return None if s0 is None else self.unit.rows(s0.db_table)

    def related_in_s0(self, field: Any) -> ModelView | None:
        """Return the S0 view of the table a relational field points to, if it was in S0."""
        key = related_key(field, self.app_label)
        if key is None:
            return None
        if key[0] in self.unit.real_apps:
            return None
        return self.unit.lineage.s0_model(key)

    def names(self, **extra: Any) -> dict[str, Any]:
        """Return the identifiers messages and recipes are filled with."""
        model = self.model
        names: dict[str, Any] = {
            "app_label": self.app_label,
            "migration": self.migration_name,
            "model": model.name if model else "",
            "table": model.db_table if model else "",
        }
        names.update(extra)
        return names


@dataclass
class MigrationContext:
    """A judged migration with the contexts of all its operations, in order."""

    app_label: str
    migration: migrations.Migration
    operations: Sequence[OperationContext]
    unit: Unit

    @property
    def atomic(self) -> bool:
        return bool(getattr(self.migration, "atomic", True))


@dataclass
class StartupQuery:
    """A query Django ran (or tried to) while it started, with the user code that issued it."""

    sql: str
    path: str | None
    line: int | None
    error: str | None = None

    @property
    def connected(self) -> bool:
        """False for a failed connection attempt: the query it was for is unknown."""
        return not self.sql.startswith("<connection to database")


def startup_tables(queries: Sequence[StartupQuery]) -> frozenset[str] | None:
    """Return every quoted identifier the start-up queries name (tables among them; Django
    quotes every table it queries), or None when a failed connection hid the queries."""
    if any(not q.connected for q in queries):
        return None
    return frozenset(
        name for q in queries for name in _QUOTED.findall(q.sql)
    )


@dataclass
class ProjectContext:
    loader: MigrationLoader | None
    judged_apps: Callable[[str], bool]
    startup_queries: Sequence[StartupQuery] = ()
    startup_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
