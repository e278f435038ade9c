"""What the old release sees: S0 lookups shared by the compatibility rules (C102-C109).

The walk records an operation in the unit's lineage before the rules see it, so for
``RemoveField``, ``DeleteModel`` and ``RenameModel`` the public ``OperationContext.s0_field`` /
``s0_model`` already describe the state *after* the operation. The helpers here answer from
the lineage's S0 snapshots instead, and find S0 models by table name for ``RunSQL``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.db import migrations, models
from django.db.backends.utils import truncate_name

from django_rollout.graph.context import OperationContext, Unit, target_keys
from django_rollout.graph.model import ModelKey, ModelView, column_name, related_key
from django_rollout.graph.runsql import SqlAction, parse_sql_safe

# PostgreSQL keeps 63 bytes of an identifier; Django truncates join table names to it.
_MAX_NAME = 63


def _snapshots(unit: Unit) -> dict[ModelKey, ModelView | None]:
    # Lineage keeps the S0 view of every model the unit touched; it has no public accessor.
    snapshots = getattr(unit.lineage, "_s0", None)
    return snapshots if isinstance(snapshots, dict) else {}


def s0_target(ctx: OperationContext) -> ModelView | None:
    """Return the S0 view of the model the operation acts on, as it was before it ran."""
    s0 = ctx.s0_model
    if s0 is not None:
        return s0
    before, after = target_keys(ctx.operation, ctx.app_label)
    if isinstance(ctx.operation, migrations.RenameModel) and after is not None:
        return ctx.unit.lineage.s0_model(after)
    if isinstance(ctx.operation, migrations.DeleteModel) and before is not None and ctx.state:
        return _snapshots(ctx.unit).get(before)
    return None


def target_in_s0(ctx: OperationContext) -> bool:
    """Return True when the operation's table existed in S0 (live readers, rows)."""
    s0 = s0_target(ctx)
    return s0 is not None and s0.has_table


def s0_column_field(
    ctx: OperationContext, name: str, field: models.Field[Any, Any]
) -> models.Field[Any, Any] | None:
    """Return the S0 field that field ``name`` (before the operation) descends from.

    Follows renames through the lineage; for ``RemoveField`` (already recorded as gone) fall
    back to the column: the S0 model stores a column of the same name.
    """
    found = ctx.s0_field(name)
    if found is not None:
        return found
    if isinstance(ctx.operation, migrations.RemoveField) and ctx.state:
        s0 = s0_target(ctx)
        column = column_name(name, field)
        if s0 is not None and column is not None:
            match = s0.field_for_column(column)
            return None if match is None else match[1]
    return None


def s0_models(unit: Unit) -> Iterator[ModelView]:
    """Yield every model of S0 that owns a table (renamed and deleted ones included)."""
    seen: set[tuple[str, str]] = set()
    candidates: list[ModelView | None] = list(_snapshots(unit).values())
    candidates.extend(unit.lineage.s0_model(key) for key in list(unit.state.models))
    for model in candidates:
        if model is None or not model.has_table or model.key in seen:
            continue
        seen.add(model.key)
        yield model


def s0_model_for_table(unit: Unit, table: str | None) -> ModelView | None:
    """Return the S0 model stored in ``table`` (compared case-insensitively), or None."""
    if not table:
        return None
    wanted = table.lower()
    for model in s0_models(unit):
        if model.db_table.lower() == wanted:
            return model
    return None


def s0_column(unit: Unit, table: str | None, column: str) -> tuple[ModelView, str] | None:
    """Return (S0 model, field name) of ``table``.``column`` if the old release uses it."""
    model = s0_model_for_table(unit, table)
    if model is None:
        return None
    wanted = column.lower()
    for name, col, _field in model.columns():
        if col.lower() == wanted:
            return model, name
    return None


def sql_actions(ctx: OperationContext) -> tuple[SqlAction, ...]:
    """Return the parsed actions of a ``RunSQL`` that runs on the database, else ()."""
    op = ctx.operation
    if not isinstance(op, migrations.RunSQL) or not ctx.database:
        return ()
    actions, _error = parse_sql_safe(op.sql, ctx.unit.vendor)
    return actions


def is_auto_m2m(field: models.Field[Any, Any]) -> bool:
    """Return True for a many-to-many field whose join table Django creates itself."""
    if not field.many_to_many:
        return False
    through = getattr(field.remote_field, "through", None)
    if through is None:
        return True
    meta = getattr(through, "_meta", None)
    return bool(meta is not None and meta.auto_created)


def join_table(model: ModelView, name: str, field: models.Field[Any, Any]) -> str:
    """Return the name of the join table of an auto-created many-to-many field."""
    explicit = getattr(field, "db_table", None)
    if explicit:
        return str(explicit)
    return str(truncate_name(f"{model.db_table}_{name}", _MAX_NAME))


def auto_join_tables(model: ModelView) -> list[str]:
    return [join_table(model, n, f) for n, f in model.fields.items() if is_auto_m2m(f)]


def related_target(ctx: OperationContext, field: models.Field[Any, Any]) -> ModelKey | None:
    """Return the model key a relational field points to; ``"self"`` is the op's model."""
    remote = getattr(field, "remote_field", None)
    if remote is None:
        return None
    if remote.model == "self":
        return ctx.key
    return related_key(field, ctx.app_label)


def backticked(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)
