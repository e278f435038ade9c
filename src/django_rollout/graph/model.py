"""Cheap, frozen views of ``ModelState`` at one point of the walk.

Django mutates ``ModelState`` objects in place as operations run, so a rule that wants the
"before" of an operation needs a copy. A view shallow-copies the field and option dicts: field
objects themselves are replaced, not mutated, by the state operations we read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.migrations.state import ModelState, ProjectState

ModelKey = tuple[str, str]  # (app_label, model_name_lower), as ProjectState.models keys


def default_db_table(app_label: str, model_name: str) -> str:
    """Return the table name Django gives a model without ``db_table``."""
    return f"{app_label}_{model_name.lower()}"


def related_key(field: models.Field[Any, Any], app_label: str) -> ModelKey | None:
    """Return the model key a relational field points to, resolved from its lazy reference."""
    remote = getattr(field, "remote_field", None)
    if remote is None:
        return None
    target = remote.model
    if isinstance(target, str):
        if target == "self":
            return None
        if "." in target:
            app, _, name = target.partition(".")
            return (app, name.lower())
        return (app_label, target.lower())
    meta = getattr(target, "_meta", None)
    if meta is None:
        return None
    return (meta.app_label, meta.model_name)


def column_name(name: str, field: models.Field[Any, Any]) -> str | None:
    """Return the column a field stores in, or None for fields without one (M2M)."""
    if field.many_to_many:
        return None
    if getattr(field, "db_column", None):
        return str(field.db_column)
    if field.is_relation and (field.many_to_one or field.one_to_one):
        return f"{name}_id"
    return name


def has_db_default(field: models.Field[Any, Any]) -> bool:
    return getattr(field, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED


def db_default_fills(field: models.Field[Any, Any]) -> bool:
    """Return True when the column has a database default other than NULL.

    ``db_default=None`` is a ``DEFAULT NULL``: rows inserted without the column, and the
    rows an ``AddField`` or a NOT NULL backfill fills, get NULL from it.
    """
    if not has_db_default(field):
        return False
    value = field.db_default
    return value is not None and not (isinstance(value, models.Value) and value.value is None)


def has_python_default(field: models.Field[Any, Any]) -> bool:
    return field.default is not models.NOT_PROVIDED


@dataclass(frozen=True)
class ModelView:
    """A model as one release of the code sees it: its table, fields and options."""

    app_label: str
    name: str
    fields: Mapping[str, models.Field[Any, Any]]
    options: Mapping[str, Any]
    bases: tuple[Any, ...] = ()

    @classmethod
    def of(cls, state: ModelState) -> ModelView:
        return cls(
            app_label=state.app_label,
            name=state.name,
            fields=dict(state.fields),
            options=dict(state.options),
            bases=tuple(state.bases),
        )

    @property
    def key(self) -> ModelKey:
        return (self.app_label, self.name.lower())

    @property
    def label(self) -> str:
        return f"{self.app_label}.{self.name}"

    @property
    def db_table(self) -> str:
        table = self.options.get("db_table")
        return str(table) if table else default_db_table(self.app_label, self.name)

    @property
    def managed(self) -> bool:
        return bool(self.options.get("managed", True))

    @property
    def proxy(self) -> bool:
        return bool(self.options.get("proxy", False))

    @property
    def has_table(self) -> bool:
        """Return True when the model owns a table that migrations create and alter."""
        return self.managed and not self.proxy

    def column(self, field_name: str) -> str | None:
        field = self.fields.get(field_name)
        return None if field is None else column_name(field_name, field)

    def field_for_column(self, column: str) -> tuple[str, models.Field[Any, Any]] | None:
        for name, field in self.fields.items():
            if column_name(name, field) == column:
                return name, field
        return None

    def columns(self) -> Iterator[tuple[str, str, models.Field[Any, Any]]]:
        """Yield (field_name, column, field) for every field stored in this table."""
        for name, field in self.fields.items():
            col = column_name(name, field)
            if col is not None:
                yield name, col, field


def view(state: ProjectState, key: ModelKey) -> ModelView | None:
    model_state = state.models.get(key)
    return None if model_state is None else ModelView.of(model_state)


def resolve_key(app_label: str, reference: str) -> ModelKey:
    """Resolve ``"app.Model"`` or ``"Model"`` (same app) to a ProjectState key."""
    if "." in reference:
        app, _, name = reference.partition(".")
        return (app, name.lower())
    return (app_label, reference.lower())


def single_lookup(condition: object) -> tuple[str, str, Any] | None:
    """Return (field, lookup, value) for a condition that is one plain lookup:
    ``Q(status="open")`` gives ``("status", "exact", "open")``, ``Q(code__isnull=False)``
    gives ``("code", "isnull", False)``. None for anything else (several lookups, a
    negation, a nested ``Q``)."""
    if not isinstance(condition, models.Q) or condition.negated or len(condition.children) != 1:
        return None
    child = condition.children[0]
    if not isinstance(child, tuple) or len(child) != 2:
        return None
    name, _, lookup = str(child[0]).partition("__")
    return name, lookup or "exact", child[1]
