"""The vocabulary every vendor's fact table speaks: lock modes, statement kinds, lock facts."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Protocol


class LockMode(enum.IntEnum):
    """A table-level lock mode, ordered as PostgreSQL documents them (weakest first).

    The order is only a ranking for reports; conflicts are not monotonic in it
    (SHARE conflicts with ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE does not), so use
    :meth:`conflicts_with` to decide who waits for whom.
    """

    ACCESS_SHARE = 1
    ROW_SHARE = 2
    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    EXCLUSIVE = 7
    ACCESS_EXCLUSIVE = 8

    @property
    def pg_name(self) -> str:
        """Return the name ``pg_locks.mode`` shows, e.g. ``AccessExclusiveLock``."""
        return "".join(part.capitalize() for part in self.name.split("_")) + "Lock"

    @property
    def sql_name(self) -> str:
        """Return the name ``LOCK TABLE ... IN <mode> MODE`` takes, e.g. ``ACCESS EXCLUSIVE``."""
        return self.name.replace("_", " ")

    @classmethod
    def from_pg_name(cls, name: str) -> LockMode:
        """Return the mode whose ``pg_locks.mode`` spelling is *name*."""
        for mode in cls:
            if mode.pg_name == name:
                return mode
        raise ValueError(f"not a table lock mode: {name!r}")

    def conflicts_with(self, other: LockMode) -> bool:
        """Return True if a lock in this mode and one in *other* cannot be held together."""
        return other in _CONFLICTS[self]

    @property
    def blocks_reads(self) -> bool:
        """Return True if plain SELECTs (ACCESS SHARE) wait while this lock is held."""
        return self.conflicts_with(LockMode.ACCESS_SHARE)

    @property
    def blocks_writes(self) -> bool:
        """Return True if INSERT/UPDATE/DELETE (ROW EXCLUSIVE) wait while this lock is held."""
        return self.conflicts_with(LockMode.ROW_EXCLUSIVE)


_M = LockMode
# The conflict matrix from the PostgreSQL manual, "Explicit Locking", table 13.2.
_CONFLICTS: dict[LockMode, frozenset[LockMode]] = {
    _M.ACCESS_SHARE: frozenset({_M.ACCESS_EXCLUSIVE}),
    _M.ROW_SHARE: frozenset({_M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.ROW_EXCLUSIVE: frozenset(
        {_M.SHARE, _M.SHARE_ROW_EXCLUSIVE, _M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}
    ),
    _M.SHARE_UPDATE_EXCLUSIVE: frozenset(
        {
            _M.SHARE_UPDATE_EXCLUSIVE,
            _M.SHARE,
            _M.SHARE_ROW_EXCLUSIVE,
            _M.EXCLUSIVE,
            _M.ACCESS_EXCLUSIVE,
        }
    ),
    _M.SHARE: frozenset(
        {
            _M.ROW_EXCLUSIVE,
            _M.SHARE_UPDATE_EXCLUSIVE,
            _M.SHARE_ROW_EXCLUSIVE,
            _M.EXCLUSIVE,
            _M.ACCESS_EXCLUSIVE,
        }
    ),
    _M.SHARE_ROW_EXCLUSIVE: frozenset(
        {
            _M.ROW_EXCLUSIVE,
            _M.SHARE_UPDATE_EXCLUSIVE,
            _M.SHARE,
            _M.SHARE_ROW_EXCLUSIVE,
            _M.EXCLUSIVE,
            _M.ACCESS_EXCLUSIVE,
        }
    ),
    _M.EXCLUSIVE: frozenset(set(LockMode) - {_M.ACCESS_SHARE}),
    _M.ACCESS_EXCLUSIVE: frozenset(LockMode),
}


class StatementKind(enum.Enum):
    """The closed set of statement shapes the rules reason about.

    Anything the parser cannot place in one of these is ``OTHER``; rules must treat
    ``OTHER`` as "unknown", never as "harmless".
    """

    CREATE_TABLE = "create_table"
    DROP_TABLE = "drop_table"
    RENAME_TABLE = "rename_table"
    ADD_COLUMN = "add_column"
    ADD_COLUMN_VOLATILE_DEFAULT = "add_column_volatile_default"
    DROP_COLUMN = "drop_column"
    RENAME_COLUMN = "rename_column"
    ALTER_COLUMN_TYPE = "alter_column_type"
    SET_NOT_NULL = "set_not_null"
    DROP_NOT_NULL = "drop_not_null"
    SET_DEFAULT = "set_default"
    DROP_DEFAULT = "drop_default"
    ADD_UNIQUE_CONSTRAINT = "add_unique_constraint"
    ADD_UNIQUE_USING_INDEX = "add_unique_using_index"
    ADD_PRIMARY_KEY = "add_primary_key"
    ADD_CHECK = "add_check"
    ADD_CHECK_NOT_VALID = "add_check_not_valid"
    ADD_FOREIGN_KEY = "add_foreign_key"
    ADD_FOREIGN_KEY_NOT_VALID = "add_foreign_key_not_valid"
    ADD_NOT_NULL_NOT_VALID = "add_not_null_not_valid"
    VALIDATE_CONSTRAINT = "validate_constraint"
    DROP_CONSTRAINT = "drop_constraint"
    RENAME_CONSTRAINT = "rename_constraint"
    CREATE_INDEX = "create_index"
    CREATE_INDEX_CONCURRENTLY = "create_index_concurrently"
    DROP_INDEX = "drop_index"
    DROP_INDEX_CONCURRENTLY = "drop_index_concurrently"
    RENAME_INDEX = "rename_index"
    REINDEX = "reindex"
    REINDEX_CONCURRENTLY = "reindex_concurrently"
    ATTACH_PARTITION = "attach_partition"
    DETACH_PARTITION = "detach_partition"
    DETACH_PARTITION_CONCURRENTLY = "detach_partition_concurrently"
    TRUNCATE = "truncate"
    UPDATE = "update"
    INSERT = "insert"
    DELETE = "delete"
    SET_LOCK_TIMEOUT = "set_lock_timeout"
    SET_STATEMENT_TIMEOUT = "set_statement_timeout"
    OTHER = "other"


@dataclass(frozen=True)
class LockFact:
    """What one kind of statement does to the tables it touches on one vendor and version.

    ``table_mode`` is the lock on the statement's own table (for index statements: the
    table the index is on; for partition statements: the parent). ``referenced_mode`` is
    the lock on the table a foreign key points to, where the statement involves one;
    ``partition_mode`` the lock on the partition being attached or detached. ``None``
    means that table is not locked. ``rewrites`` means every row is written anew (a new
    relfilenode on PostgreSQL); ``scans`` means every row is read under the lock, to
    validate, build or copy (every rewrite but TRUNCATE scans).
    """

    kind: StatementKind
    table_mode: LockMode | None
    referenced_mode: LockMode | None
    rewrites: bool
    scans: bool
    note: str = ""
    partition_mode: LockMode | None = None


class UnsupportedStatementError(ValueError):
    """The vendor or server version cannot run this kind of statement at all."""


class VendorFacts(Protocol):
    """The per-vendor fact table that rules consult instead of branching on the vendor."""

    vendor: str

    def lock(self, kind: StatementKind, server_version: int) -> LockFact:
        """Return what *kind* locks, rewrites and scans on *server_version*.

        Raise :class:`UnsupportedStatementError` when that version cannot run it.
        """
        ...

    def type_change_rewrites(self, old_db_type: str, new_db_type: str, server_version: int) -> bool:
        """Return True if changing a column from *old_db_type* to *new_db_type* rewrites
        or fully scans the table. If in doubt, return True."""
        ...

    def type_change_narrows(self, old_db_type: str, new_db_type: str) -> bool:
        """Return True if some value of *old_db_type* may not fit *new_db_type*."""
        ...


@dataclass(frozen=True)
class DbType:
    """A column type as Django's ``db_type()`` spells it, reduced to a canonical form."""

    base: str
    length: int | None = None  # varchar/char
    precision: int | None = None  # numeric precision, or fractional seconds of timestamps
    scale: int | None = None


# Synonyms PostgreSQL accepts, mapped to one spelling; Django emits the long forms.
_SYNONYMS = {
    "character varying": "varchar",
    "character": "char",
    "bpchar": "char",
    "int": "integer",
    "int4": "integer",
    "serial": "integer",
    "int8": "bigint",
    "bigserial": "bigint",
    "int2": "smallint",
    "smallserial": "smallint",
    "decimal": "numeric",
    "float8": "double precision",
    "float4": "real",
    "bool": "boolean",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time without time zone": "time",
    "time with time zone": "timetz",
}
_TYPE_RE = re.compile(r"^(?P<base>[a-z0-9_ ]+?)\s*(?:\((?P<args>[0-9,\s]*)\))?(?P<rest>[a-z ]*)$")


def parse_db_type(db_type: str) -> DbType:
    """Return the canonical form of *db_type*; unknown types keep their lower-cased text."""
    text = " ".join(db_type.lower().split())
    match = _TYPE_RE.match(text)
    if match is None:
        return DbType(text)
    # "timestamp(3) with time zone" puts the modifier in the middle.
    base = _SYNONYMS.get(
        f"{match['base']}{match['rest']}".strip(), f"{match['base']}{match['rest']}".strip()
    )
    args = [int(a) for a in (match["args"] or "").replace(" ", "").split(",") if a]
    if base in ("varchar", "char"):
        if base == "char" and not args:
            args = [1]
        return DbType(base, length=args[0] if args else None)
    if base == "numeric":
        return DbType(
            base,
            precision=args[0] if args else None,
            scale=(args[1] if len(args) > 1 else 0) if args else None,
        )
    if base in ("timestamp", "timestamptz", "time", "timetz"):
        return DbType(base, precision=args[0] if args else None)
    return DbType(base)


_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_TEXT = ("varchar", "char", "text", "citext")
# The longest text form of a value, for types whose text form is bounded in every DateStyle:
# "false", "-32768", "-2147483648", "-9223372036854775808", a UUID, "12/31/5874897 BC".
_TEXT_FORM_LENGTH = {
    "boolean": 5,
    "smallint": 6,
    "integer": 11,
    "bigint": 20,
    "uuid": 36,
    "date": 16,
}


def narrows(old: DbType, new: DbType) -> bool:
    """Return True if some value of *old* may not fit *new*. If in doubt, return True."""
    if old == new:
        return False
    if new.base in ("text", "citext") or (new.base == "varchar" and new.length is None):
        return False  # every type has a text form
    if old.base in _TEXT and new.base in ("varchar", "char"):
        return old.length is None or new.length is None or new.length < old.length
    if new.base == "varchar" and old.base in _TEXT_FORM_LENGTH:
        return new.length is not None and new.length < _TEXT_FORM_LENGTH[old.base]
    if old.base in _INTEGER_DIGITS and new.base in _INTEGER_DIGITS:
        return _INTEGER_DIGITS[new.base] < _INTEGER_DIGITS[old.base]
    if old.base in _INTEGER_DIGITS and new.base == "numeric":
        if new.precision is None:
            return False
        return new.precision - (new.scale or 0) < _INTEGER_DIGITS[old.base]
    if old.base == new.base == "numeric":
        if new.precision is None:
            return False
        if old.precision is None:
            return True
        old_int, new_int = old.precision - (old.scale or 0), new.precision - (new.scale or 0)
        return new_int < old_int or (new.scale or 0) < (old.scale or 0)
    widening = {
        ("smallint", "real"),
        ("smallint", "double precision"),
        ("integer", "double precision"),
        ("real", "double precision"),
        ("date", "timestamp"),
        ("date", "timestamptz"),
        ("timestamp", "timestamptz"),
        ("timestamptz", "timestamp"),
        ("cidr", "inet"),
        ("json", "jsonb"),
        ("boolean", "integer"),  # false and true become 0 and 1 (PostgreSQL casts to int4 only)
    }
    if (old.base, new.base) in widening:
        return False
    if old.base == new.base and old.base in ("timestamp", "timestamptz", "time", "timetz"):
        # Fractional-second precision defaults to 6 digits.
        old_digits = 6 if old.precision is None else old.precision
        return (6 if new.precision is None else new.precision) < old_digits
    return True
