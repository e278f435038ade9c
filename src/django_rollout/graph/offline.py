"""Build database connections that format Django's DDL without a database server.

Stock Django's PostgreSQL backend opens a connection to merge parameters into
statements (psycopg's client-side adaptation), to read the server version and
to introspect the live schema while it alters fields. The offline wrapper here
keeps every piece of Django's SQL generation and replaces only those three:

* the server version is pinned (``pg_version`` drives ``features.is_postgresql_NN``),
  and a pin older than the installed Django supports is refused as Django refuses
  such a server;
* values are adapted by psycopg with Django's own adapters map but no
  connection, with the two adapters that differ offline (bytea) made to match
  a live PostgreSQL with ``standard_conforming_strings=on``;
* introspection (constraint names, identity sequences, collation determinism)
  is answered from the project state just before the running operation, naming
  every object the way Django and PostgreSQL name them when Django creates the
  table as that state describes it.

Anything else that would open a socket raises ``DatabaseUnavailableError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql import base as pg_base
from django.db.backends.postgresql import features as pg_features
from django.db.backends.postgresql.operations import DatabaseOperations
from django.db.backends.postgresql.psycopg_any import get_adapters_template
from django.db.backends.postgresql.schema import DatabaseSchemaEditor
from django.db.backends.utils import split_identifier, strip_quotes
from django.db.migrations.state import ProjectState
from django.db.models import CheckConstraint, Index, UniqueConstraint
from psycopg import adapt
from psycopg._queries import PostgresClientQuery  # the exact merge ClientCursor.mogrify does
from psycopg.dbapi20 import Binary
from psycopg.types.string import BytesDumper

from django_rollout.errors import ConfigurationError, DatabaseUnavailableError, RolloutError

__all__ = [
    "OfflineIntrospectionError",
    "newest_known_postgresql",
    "offline_connection",
    "oldest_supported_postgresql",
]

# PostgreSQL's NAMEDATALEN - 1: the longest identifier the server keeps.
_PG_MAX_IDENTIFIER_BYTES = 63

# Collations every PostgreSQL cluster has, all deterministic: only
# CREATE COLLATION ... (deterministic = false) makes a non-deterministic one.
_BUILTIN_COLLATIONS = frozenset({"C", "POSIX", "default", "ucs_basic", "unicode", "pg_c_utf8"})
_LIBC_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?(\.[\w-]+)?(@\w+)?$")


class OfflineIntrospectionError(RolloutError):
    """Django asked the live database something the project state cannot answer."""


def newest_known_postgresql() -> tuple[int, ...]:
    """Return the newest PostgreSQL major version the installed Django knows features of.

    Django names a feature flag ``is_postgresql_NN`` for each release newer than its
    oldest supported one (the flags come and go with Django versions: 6.0 dropped
    ``is_postgresql_15`` with PostgreSQL 14); without any, the oldest supported release.
    """
    majors = [
        int(name.rsplit("_", 1)[1])
        for name in vars(pg_features.DatabaseFeatures)
        if re.fullmatch(r"is_postgresql_\d+", name)
    ]
    return (max([*majors, oldest_supported_postgresql()[0]]),)


def oldest_supported_postgresql() -> tuple[int, ...]:
    """Return the oldest PostgreSQL version the installed Django runs on."""
    return tuple(pg_features.DatabaseFeatures.minimum_database_version)


def offline_connection(
    vendor: str = "postgresql",
    server_version: tuple[int, ...] | None = None,
    alias: str = "rollout_offline",
) -> BaseDatabaseWrapper:
    """Return a DatabaseWrapper of ``vendor`` that formats SQL without a server.

    PostgreSQL never connects. SQLite uses a private in-memory database (the
    stdlib driver needs a handle to quote values); ``server_version`` is
    ignored there.
    """
    if vendor == "postgresql":
        version = tuple(server_version) if server_version else newest_known_postgresql()
        _check_supported(version)
        return OfflinePostgresWrapper(
            _settings_dict("django.db.backends.postgresql"), alias, version
        )
    if vendor == "sqlite":
        from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper

        return SQLiteWrapper(_settings_dict("django.db.backends.sqlite3"), alias)
    raise RolloutError(f"offline SQL is not available for the {vendor!r} database vendor")


def _check_supported(version: tuple[int, ...]) -> None:
    """Refuse a pin the installed Django would refuse to connect to.

    Django's SQL for such a server is not what it would run there (it assumes the
    features of its oldest supported release), and Django never runs it anyway:
    ``check_database_version_supported()`` stops at the first connection.
    """
    floor = oldest_supported_postgresql()
    if (tuple(version) + (0,))[:2] < (floor + (0,))[:2]:
        import django

        raise ConfigurationError(
            f"server_version {'.'.join(map(str, version))}: Django {django.get_version()} "
            f"supports PostgreSQL {'.'.join(map(str, floor))} or later"
        )


def _settings_dict(engine: str) -> dict[str, Any]:
    """Return a complete DATABASES entry, as ConnectionHandler would fill it in."""
    return {
        "ENGINE": engine,
        "NAME": ":memory:" if engine.endswith("sqlite3") else "rollout_offline",
        "USER": "",
        "PASSWORD": "",
        # An unroutable, closed address: should a connection slip through, it fails fast.
        "HOST": "" if engine.endswith("sqlite3") else "0.0.0.0",
        "PORT": "" if engine.endswith("sqlite3") else "1",
        "OPTIONS": {},
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {"CHARSET": None, "COLLATION": None, "MIGRATE": True, "MIRROR": None, "NAME": None},
    }


# --- quoting -----------------------------------------------------------------


class _HexBytesDumper(BytesDumper):
    """Quote bytea as PQescapeByteaConn does for a server with hex output."""

    def quote(self, obj: Any) -> bytes:
        if isinstance(obj, Binary):
            obj = obj.obj
        if obj is None:
            return b"NULL"
        # standard_conforming_strings is on on every supported server, so no E''.
        return b"'\\x" + bytes(obj).hex().encode("ascii") + b"'"


class _OfflineContext:
    """An AdaptContext with Django's adapters map and no connection."""

    def __init__(self) -> None:
        tz = settings.TIME_ZONE if settings.USE_TZ else None
        template = get_adapters_template(settings.USE_TZ, _zone(tz))
        self.adapters = adapt.AdaptersMap(template)
        for python_type in (bytes, bytearray, memoryview, Binary):
            self.adapters.register_dumper(python_type, _HexBytesDumper)

    @property
    def connection(self) -> None:
        return None


def _zone(name: str | None) -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo(name) if name else None


class _OfflineQuoter:
    """Merge parameters into SQL the way Django's ``mogrify`` does on a live connection."""

    def __init__(self) -> None:
        self._context = _OfflineContext()

    def mogrify(self, sql: str, params: Any) -> str:
        transformer = adapt.Transformer(self._context)
        query = PostgresClientQuery(transformer)
        query.convert(sql, params)
        return bytes(query.query).decode(transformer.encoding)

    def quote(self, value: Any) -> str:
        return adapt.Transformer(self._context).as_literal(value).decode("utf-8")


# --- the wrapper ---------------------------------------------------------------


class _OfflineOperations(DatabaseOperations):  # type: ignore[misc]
    """Compose statements client-side without a cursor."""

    def compose_sql(self, sql: str, params: Any) -> str:
        connection: OfflinePostgresWrapper = self.connection
        return connection.quoter.mogrify(sql, params)


class OfflinePostgresWrapper(pg_base.DatabaseWrapper):  # type: ignore[misc]
    """A PostgreSQL DatabaseWrapper with a pinned server version that never connects."""

    ops_class = _OfflineOperations

    def __init__(self, settings_dict: dict[str, Any], alias: str, version: tuple[int, ...]):
        super().__init__(settings_dict, alias)
        self.SchemaEditorClass = OfflinePostgresSchemaEditor
        padded = (tuple(version) + (0, 0))[:2]
        # Set the cached_property's slot directly, so nothing asks the server.
        self.__dict__["pg_version"] = padded[0] * 10000 + padded[1]
        self.server_version_pin = tuple(version)
        self.quoter = _OfflineQuoter()

    def get_database_version(self) -> tuple[int, ...]:
        major, minor = divmod(int(self.pg_version), 10000)
        return (major, minor)

    def get_new_connection(self, conn_params: Any) -> Any:
        raise DatabaseUnavailableError(
            "the offline PostgreSQL connection cannot connect; this SQL needs a live database"
        )

    def ensure_connection(self) -> None:
        self.get_new_connection(None)

    def is_usable(self) -> bool:
        return False


# --- introspection answered from the project state -------------------------------


@dataclass(frozen=True)
class _Entry:
    """One row of what ``introspection.get_constraints`` would return."""

    name: str
    columns: tuple[str | None, ...]
    primary_key: bool = False
    unique: bool = False
    foreign_key: bool = False
    check: bool = False
    index: bool = False
    type: str | None = None


def pg_object_name(name1: str, name2: str | None, label: str) -> str:
    """Name an implicit object as PostgreSQL's makeObjectName() does (no collision suffix)."""
    raw1, raw2 = name1.encode(), (name2 or "").encode()
    overhead = len(label) + 1 + (1 if name2 else 0)
    available = _PG_MAX_IDENTIFIER_BYTES - overhead
    n1, n2 = len(raw1), len(raw2)
    while n1 + n2 > available:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    parts = [_clip(raw1, n1)]
    if name2:
        parts.append(_clip(raw2, n2))
    parts.append(label)
    return "_".join(parts)


def _clip(raw: bytes, length: int) -> str:
    """Cut UTF-8 bytes to at most ``length`` without splitting a character."""
    return raw[:length].decode("utf-8", errors="ignore")


class OfflinePostgresSchemaEditor(DatabaseSchemaEditor):  # type: ignore[misc]
    """Django's PostgreSQL schema editor with every server round trip answered offline.

    The collector sets ``rollout_state`` (the project state before the running
    operation) and ``rollout_collations`` (collations created earlier in the
    migration) before each operation.
    """

    rollout_state: ProjectState | None = None

    def __init__(self, connection: Any, collect_sql: bool = False, atomic: bool = True):
        super().__init__(connection, collect_sql=collect_sql, atomic=atomic)
        self.rollout_collations: dict[str, bool] = {}
        self._renamed_tables: dict[str, str] = {}

    def quote_value(self, value: Any) -> str:
        quoter: _OfflineQuoter = self.connection.quoter
        return quoter.quote(value)

    def alter_db_table(self, model: Any, old_db_table: str, new_db_table: str) -> None:
        # RenameModel alters self-referencing FKs after the rename: remember the old name.
        self._renamed_tables[new_db_table] = self._renamed_tables.get(old_db_table, old_db_table)
        super().alter_db_table(model, old_db_table, new_db_table)

    def _is_collation_deterministic(self, collation_name: str) -> bool | None:
        if collation_name in self.rollout_collations:
            return self.rollout_collations[collation_name]
        if (
            collation_name in _BUILTIN_COLLATIONS
            or collation_name.endswith("-x-icu")
            or _LIBC_LOCALE.match(collation_name)
        ):
            return True
        raise OfflineIntrospectionError(
            f"cannot tell offline whether collation {collation_name!r} is deterministic "
            "(it decides the varchar_pattern_ops index)"
        )

    def _get_sequence_name(self, table: str, column: str) -> str | None:
        collected: list[str] = getattr(self, "collected_sql", [])
        if (
            collected
            and collected[-1].startswith(self.sql_drop_indentity.split("%", 1)[0])
            and collected[-1]
            .rstrip(";")
            .endswith(f"{self.quote_name(column)} DROP IDENTITY IF EXISTS")
        ):
            # The DROP IDENTITY just issued drops the identity sequence with it
            # when Django really runs the migration, so no sequence is found.
            return None
        model = self._state_model(table)
        if model is None:
            return None
        for field in model._meta.local_concrete_fields:
            if field.column == column and field.get_internal_type() in _AUTO_FIELDS:
                return pg_object_name(model._meta.db_table, column, "seq")
        return None

    def _constraint_names(
        self,
        model: Any,
        column_names: list[str] | None = None,
        unique: bool | None = None,
        primary_key: bool | None = None,
        index: bool | None = None,
        foreign_key: bool | None = None,
        check: bool | None = None,
        type_: str | None = None,
        exclude: set[str] | None = None,
    ) -> list[str]:
        state_model = self._state_model(model._meta.db_table)
        entries = list(self._catalog(state_model)) if state_model is not None else []
        wanted = tuple(column_names) if column_names is not None else None
        result = []
        for entry in entries:
            if wanted is not None and wanted != entry.columns:
                continue
            if unique is not None and entry.unique != unique:
                continue
            if primary_key is not None and entry.primary_key != primary_key:
                continue
            if index is not None and entry.index != index:
                continue
            if check is not None and entry.check != check:
                continue
            if foreign_key is not None and not entry.foreign_key:
                continue
            if type_ is not None and entry.type != type_:
                continue
            if not exclude or entry.name not in exclude:
                result.append(entry.name)
        return result

    def _state_model(self, db_table: str) -> Any:
        """Return the before-state model whose table is ``db_table``, or None."""
        if self.rollout_state is None:
            raise OfflineIntrospectionError("introspection outside a collected operation")
        table = strip_quotes(self._renamed_tables.get(db_table, db_table))
        for model in self.rollout_state.apps.get_models(include_auto_created=True):
            if strip_quotes(model._meta.db_table) == table and not model._meta.proxy:
                return model
        return None

    def _catalog(self, model: Any) -> Iterator[_Entry]:
        """Yield what PostgreSQL would list for the table Django creates for ``model``.

        Order follows creation: constraints first (as get_constraints lists them),
        then indexes.
        """
        meta = model._meta
        table = strip_quotes(meta.db_table)
        index_entries: list[_Entry] = []
        for field in meta.local_concrete_fields:
            column = field.column
            if field.primary_key:
                yield _Entry(pg_object_name(table, None, "pkey"), (column,), True, True)
            elif field.unique:
                yield _Entry(pg_object_name(table, column, "key"), (column,), unique=True)
            if field.db_parameters(connection=self.connection)["check"]:
                yield _Entry(pg_object_name(table, column, "check"), (column,), check=True)
            if field.remote_field and field.db_constraint:
                target = field.target_field
                suffix = f"_fk_{split_identifier(target.model._meta.db_table)[1]}_{target.column}"
                name = self._create_index_name(meta.db_table, [column], suffix=suffix)
                yield _Entry(name, (column,), foreign_key=True)
            if self._field_should_be_indexed(model, field):
                name = self._create_index_name(meta.db_table, [column])
                index_entries.append(_Entry(name, (column,), index=True, type=Index.suffix))
            like = self._create_like_index_sql(model, field)
            if like is not None:
                name = self._create_index_name(meta.db_table, [column], suffix="_like")
                index_entries.append(_Entry(name, (column,), index=True, type=Index.suffix))
        for fields in meta.unique_together:
            columns = [meta.get_field(f).column for f in fields]
            name = self._create_index_name(meta.db_table, columns, suffix="_uniq")
            yield _Entry(name, tuple(columns), unique=True)
        for constraint in meta.constraints:
            yield from self._constraint_entry(model, constraint, index_entries)
        for idx in meta.indexes:
            index_entries.append(_index_entry(model, idx))
        # index_together left Meta in Django 5.1 but lives on in historical states.
        assert self.rollout_state is not None  # _state_model() checked it
        model_state = self.rollout_state.models.get((meta.app_label, meta.model_name))
        for fields in (model_state.options.get("index_together") or ()) if model_state else ():
            columns = [meta.get_field(f).column for f in fields]
            name = self._create_index_name(meta.db_table, columns, suffix="_idx")
            index_entries.append(_Entry(name, tuple(columns), index=True, type=Index.suffix))
        yield from index_entries

    def _constraint_entry(
        self, model: Any, constraint: Any, indexes: list[_Entry]
    ) -> Iterator[_Entry]:
        """Yield a Meta.constraints entry; unique indexes go to ``indexes``."""
        meta = model._meta
        if isinstance(constraint, UniqueConstraint):
            columns = tuple(meta.get_field(f).column for f in constraint.fields)
            if (
                constraint.condition
                or constraint.include
                or constraint.opclasses
                or (constraint.expressions)
            ):
                include = tuple(meta.get_field(f).column for f in constraint.include)
                exprs: tuple[str | None, ...] = (None,) * len(constraint.expressions)
                cols = columns + exprs + include
                indexes.append(
                    _Entry(
                        constraint.name,
                        cols if cols != (None,) else (),
                        unique=True,
                        index=True,
                        type=Index.suffix,
                    )
                )
            else:
                yield _Entry(constraint.name, columns, unique=True)
        else:
            # Check constraints and third-party ones (ExclusionConstraint) are
            # pg_constraint rows; Django only asks for them by name exclusion.
            yield _Entry(constraint.name, (), check=isinstance(constraint, CheckConstraint))


_AUTO_FIELDS = frozenset({"AutoField", "BigAutoField", "SmallAutoField"})


def _index_entry(model: Any, index: Any) -> _Entry:
    """Describe a Meta.indexes index as get_constraints would."""
    meta = model._meta
    if index.expressions:
        columns: tuple[str | None, ...] = (None,) * len(index.expressions)
    else:
        columns = tuple(meta.get_field(f.lstrip("-")).column for f in index.fields)
    columns += tuple(meta.get_field(f).column for f in index.include)
    basic = type(index) is Index and not index.db_tablespace
    return _Entry(
        index.name,
        columns if columns != (None,) else (),
        index=True,
        type=Index.suffix if basic else getattr(index, "suffix", None),
    )


@cache
def shared_offline_connection(
    vendor: str, server_version: tuple[int, ...]
) -> BaseDatabaseWrapper | None:
    """Return one offline connection per vendor and version, for rules that ask ``db_type()``.

    None when the vendor has none (its types stay unknown). A pin the installed Django
    refuses is bad input, not a gap: it raises.
    """
    try:
        return offline_connection(vendor, server_version or None)
    except ConfigurationError:
        raise
    except Exception:  # noqa: BLE001 - no offline wrapper for this vendor
        return None
