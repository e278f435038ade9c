"""The database's view of a field, without a server: its column type, check, default.

Types come from Django's own backend through a connection that never connects
(:func:`django_rollout.graph.sql.offline_connection`), so they are the exact strings the
vendor's fact tables compare.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from django_rollout.graph.context import Unit
from django_rollout.graph.model import ModelKey, column_name, has_db_default
from django_rollout.graph.runsql import parse_sql_safe
from django_rollout.vendors import StatementKind

K = StatementKind

# Besides Django's own ``non_db_attrs``, the comment: Django alters it without touching
# foreign keys.
_ALSO_NON_DB = frozenset({"db_comment"})


def connection_for(unit: Unit) -> BaseDatabaseWrapper | None:
    connection: BaseDatabaseWrapper | None = unit.connection
    return connection


def _target_pk(unit: Unit, field: models.Field[Any, Any], app_label: str) -> Any | None:
    key = field_target(field, app_label)
    target = unit.model_now(key) if key else None
    if target is None:
        return None
    to_field = getattr(field, "to_fields", [None])[0] if getattr(field, "to_fields", None) else None
    for name, candidate in target.fields.items():
        if (to_field and name == to_field) or (not to_field and candidate.primary_key):
            return candidate
    return None


def db_type(unit: Unit, field: models.Field[Any, Any], app_label: str) -> str | None:
    """Return the column type Django gives ``field`` on the unit's vendor, None if unknown."""
    conn = connection_for(unit)
    if conn is None or field.many_to_many:
        return None
    try:
        if field.is_relation and (field.many_to_one or field.one_to_one):
            target = _target_pk(unit, field, app_label)
            found = None if target is None else target.rel_db_type(conn)
        else:
            found = field.db_type(conn)
        return None if found is None else str(found)
    except Exception:  # noqa: BLE001 - a field that needs a rendered model: unknown type
        return None


def db_check(unit: Unit, field: models.Field[Any, Any], column: str) -> str | None:
    conn = connection_for(unit)
    if conn is None:
        return None
    try:
        data = field.db_type_parameters(conn)
        data["column"] = column
        check = conn.data_type_check_constraints.get(field.get_internal_type())
        return check % data if check else None
    except Exception:  # noqa: BLE001
        return None


def volatile_db_default(unit: Unit, field: models.Field[Any, Any]) -> bool:
    """Return True if the column's database default gives each existing row its own value."""
    if isinstance(field, models.GeneratedField):
        return bool(field.db_persist)
    if not has_db_default(field):
        return False
    expression = field._db_default_expression
    if isinstance(expression, models.Value):
        return False  # a literal: stored once in the catalog
    conn = connection_for(unit)
    if conn is None:
        return False
    try:
        from django.db.models.sql.query import Query

        editor = conn.schema_editor(collect_sql=True, atomic=False)
        compiler = Query(None).get_compiler(connection=conn)
        sql, params = compiler.compile(expression)
        sql = sql % tuple(editor.quote_value(p) for p in params) if params else sql
        text = f'ALTER TABLE "t" ADD COLUMN "c" integer DEFAULT ({sql})'
        actions, error = parse_sql_safe(text, unit.vendor)
    except Exception:  # noqa: BLE001 - cannot render the default: judge it not volatile
        return False
    return error is None and any(a.kind is K.ADD_COLUMN_VOLATILE_DEFAULT for a in actions)


def has_like_index(unit: Unit, field: models.Field[Any, Any], type_: str | None) -> bool:
    """Return True if the vendor's schema editor adds a ``*_like`` pattern-ops index."""
    conn = connection_for(unit)
    if conn is None or type_ is None or "[" in type_:
        return False
    if not hasattr(conn.SchemaEditorClass, "_create_like_index_sql"):
        return False
    return type_.startswith(("varchar", "text"))


def field_target(field: models.Field[Any, Any], app_label: str) -> ModelKey | None:
    remote = getattr(field, "remote_field", None)
    if remote is None:
        return None
    target = remote.model
    if isinstance(target, str):
        if target == "self":
            return None
        app, _, name = target.rpartition(".")
        return (app or app_label, name.lower())
    meta = getattr(target, "_meta", None)
    return None if meta is None else (meta.app_label, meta.model_name)


def has_fk_constraint(field: models.Field[Any, Any] | None) -> bool:
    return bool(
        field is not None
        and field.is_relation
        and (field.many_to_one or field.one_to_one)
        and getattr(field, "db_constraint", False)
    )


def fills_existing_rows(field: models.Field[Any, Any]) -> bool:
    """Return True if Django gives existing rows a non-NULL value when it adds ``field``
    (a ``db_default``, or the ``default``/blank value it sets as a temporary column default)."""
    if has_db_default(field):
        return field.db_default is not None
    if field.has_default():
        return callable(field.default) or field.default is not None
    try:
        return BaseDatabaseSchemaEditor._effective_default(field) is not None
    except Exception:  # noqa: BLE001 - a default that needs a rendered model
        return True


def _non_db_attrs(field: models.Field[Any, Any]) -> frozenset[str]:
    """Return the attributes of ``field`` that never reach the database.

    Asked of the field itself, as Django does: since Django 6.1 a ForeignKey's
    ``on_delete`` is one of them only while Python enforces it (``CASCADE``), not when
    the database does (``DB_CASCADE`` and the other ``DatabaseOnDelete`` values).
    """
    return frozenset(getattr(field, "non_db_attrs", models.Field.non_db_attrs)) | _ALSO_NON_DB


def comment_altered(old: models.Field[Any, Any], new: models.Field[Any, Any]) -> bool:
    """Return True when the column's comment changes: on PostgreSQL Django sends it with an
    ``ALTER COLUMN ... TYPE`` of the same type (ACCESS EXCLUSIVE, checked for pending
    trigger events) before its ``COMMENT ON``, though ``db_differs`` leaves it out."""
    return not old.many_to_many and old.db_comment != new.db_comment


def db_differs(
    old: models.Field[Any, Any],
    new: models.Field[Any, Any],
    name: str,
    same_target_table: bool = False,
    renames: bool = True,
) -> bool:
    """Return True when Django's schema editor alters the column (``_field_should_be_altered``;
    ``same_target_table``: two relations point at one table, so their ``to`` does not count;
    ``renames``: whether a new column name alone counts)."""
    _, old_path, old_args, old_kwargs = old.deconstruct()
    _, new_path, new_args, new_kwargs = new.deconstruct()
    for attr in _non_db_attrs(old):
        old_kwargs.pop(attr, None)
    for attr in _non_db_attrs(new):
        new_kwargs.pop(attr, None)
    if same_target_table:
        old_kwargs.pop("to", None)
        new_kwargs.pop("to", None)
    if renames and column_name(name, old) != column_name(name, new):
        return True
    return (old_path, old_args, old_kwargs) != (new_path, new_args, new_kwargs)
