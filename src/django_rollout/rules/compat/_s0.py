"""What the old release sees: S0 lookups shared by the compatibility rules (C102-C109).

The operation's own S0 facts come from ``OperationContext``; the helpers here add the lookups
``RunSQL`` needs (an S0 model by table and column name) and join-table naming.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations, models
from django.db.backends.utils import truncate_name

from django_rollout.graph.context import OperationContext, Unit
from django_rollout.graph.model import ModelKey, ModelView, related_key
from django_rollout.graph.runsql import SqlAction, parse_sql_safe

# PostgreSQL keeps 63 bytes of an identifier; Django truncates join table names to it.
_MAX_NAME = 63


def s0_target(ctx: OperationContext) -> ModelView | None:
    """Return the S0 view of the model the operation acts on, as it was before it ran."""
    return ctx.s0_model


def target_in_s0(ctx: OperationContext) -> bool:
    """Return True when the operation's table existed in S0 (live readers, rows)."""
    return ctx.table_in_s0


def s0_column_field(
    ctx: OperationContext, name: str, field: models.Field[Any, Any]
) -> models.Field[Any, Any] | None:
    """Return the S0 field that field ``name`` (before the operation) descends from."""
    found: models.Field[Any, Any] | None = ctx.s0_field(name)
    return found


def s0_column(unit: Unit, table: str | None, column: str) -> tuple[ModelView, str] | None:
    """Return (S0 model, field name) of ``table``.``column`` if the old release uses it."""
    model = unit.lineage.s0_model_for_table(table)
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
