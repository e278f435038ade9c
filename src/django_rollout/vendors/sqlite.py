"""SQLite facts.

SQLite has no table locks: a writing transaction holds the database's one RESERVED
lock until it commits, so every other writer waits (``database is locked`` once its
busy timeout runs out) whatever table it writes. Readers continue in WAL mode and
wait only for the commit in rollback-journal mode. That is PostgreSQL's EXCLUSIVE
mode (writes block, reads do not), taken on the whole database, which is how the
facts below spell it.

SQLite's ALTER TABLE only renames tables and columns, adds columns and (3.35+) drops
them; anything else Django's schema editor does by rebuilding the table
(``_remake_table``: create a copy, ``INSERT ... SELECT``, drop, rename), which rewrites
every row.

``server_version`` is ``sqlite3.sqlite_version_info`` packed as
``major * 10000 + minor * 100 + patch`` (3.45.1 is ``34501``).
"""

from __future__ import annotations

from django_rollout.vendors.base import (
    LockFact,
    LockMode,
    StatementKind,
    UnsupportedStatementError,
    narrows,
    parse_db_type,
)

K = StatementKind
_WRITE = LockMode.EXCLUSIVE
_DATABASE = "SQLite locks the whole database, not one table"
_REBUILD = "SQLite has no ALTER TABLE form for this; Django rebuilds the table (_remake_table)"

_FACTS: dict[StatementKind, LockFact] = {
    f.kind: f
    for f in (
        LockFact(K.CREATE_TABLE, _WRITE, None, False, False, _DATABASE),
        LockFact(K.DROP_TABLE, _WRITE, None, False, False, _DATABASE),
        LockFact(K.RENAME_TABLE, _WRITE, None, False, False, _DATABASE),
        LockFact(
            K.ADD_COLUMN,
            _WRITE,
            None,
            False,
            False,
            "only the schema text changes; rows gain the column when next written",
        ),
        LockFact(
            K.DROP_COLUMN,
            _WRITE,
            None,
            True,
            True,
            "SQLite rewrites every row to remove the column's values",
        ),
        LockFact(K.RENAME_COLUMN, _WRITE, None, False, False, _DATABASE),
        LockFact(K.CREATE_INDEX, _WRITE, None, False, True, _DATABASE),
        LockFact(K.DROP_INDEX, _WRITE, None, False, False, _DATABASE),
        LockFact(K.REINDEX, _WRITE, None, False, True, _DATABASE),
        LockFact(K.UPDATE, _WRITE, None, False, False, _DATABASE),
        LockFact(K.INSERT, _WRITE, None, False, False, _DATABASE),
        LockFact(K.DELETE, _WRITE, None, False, False, _DATABASE),
        *(
            LockFact(kind, _WRITE, None, True, True, _REBUILD)
            for kind in (
                K.ADD_COLUMN_VOLATILE_DEFAULT,
                K.ALTER_COLUMN_TYPE,
                K.SET_NOT_NULL,
                K.DROP_NOT_NULL,
                K.SET_DEFAULT,
                K.DROP_DEFAULT,
                K.ADD_UNIQUE_CONSTRAINT,
                K.ADD_PRIMARY_KEY,
                K.ADD_CHECK,
                K.ADD_FOREIGN_KEY,
                K.DROP_CONSTRAINT,
            )
        ),
    )
}

# ALTER TABLE ... DROP COLUMN arrived in 3.35.0; Django uses it from 3.35.5 and
# rebuilds the table before that.
_DROP_COLUMN_SINCE = 33505


class SQLiteFacts:
    """Lock, rewrite and scan facts for SQLite."""

    vendor = "sqlite"

    def lock(self, kind: StatementKind, server_version: int) -> LockFact:
        """Return what *kind* does; raise UnsupportedStatementError where SQLite has no such
        statement (NOT VALID, CONCURRENTLY, partitions, TRUNCATE, lock_timeout)."""
        if kind is K.DROP_COLUMN and server_version < _DROP_COLUMN_SINCE:
            return LockFact(K.DROP_COLUMN, _WRITE, None, True, True, _REBUILD)
        fact = _FACTS.get(kind)
        if fact is None:
            if kind is K.OTHER:
                return LockFact(K.OTHER, _WRITE, None, False, False, "not modelled: " + _DATABASE)
            raise UnsupportedStatementError(f"SQLite has no statement of kind {kind.name}")
        return fact

    def type_change_rewrites(self, old_db_type: str, new_db_type: str, server_version: int) -> bool:
        """Return True: Django rebuilds the table for every column type change."""
        return parse_db_type(old_db_type) != parse_db_type(new_db_type)

    def type_change_narrows(self, old_db_type: str, new_db_type: str) -> bool:
        """Return True if converted values may change meaning or stop matching the new type.

        SQLite ignores lengths and precisions (``varchar(10)`` stores any text), so only a
        change of type family narrows.
        """
        old, new = parse_db_type(old_db_type), parse_db_type(new_db_type)
        if old.base == new.base or {old.base, new.base} <= {"varchar", "char", "text"}:
            return False
        return narrows(old, new)
