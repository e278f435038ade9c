"""PostgreSQL facts for server major versions 12 to 18.

Every entry for the server the test suite runs on is asserted against ``pg_locks``,
``pg_class.relfilenode`` and ``pg_stat_xact_user_tables`` in
``tests/vendors/test_postgresql_locks.py``. Entries come from the manual's "Explicit
Locking" chapter and the ALTER TABLE reference page; where they differ by version the
difference is encoded in :data:`_CHANGES` with the release that introduced it.
"""

from __future__ import annotations

from django_rollout.vendors.base import (
    DbType,
    LockFact,
    LockMode,
    StatementKind,
    UnsupportedStatementError,
    narrows,
    parse_db_type,
)

K = StatementKind
M = LockMode

MIN_VERSION = 12
MAX_VERSION = 18


def major_version(server_version: int) -> int:
    """Return the major version of *server_version*, given as ``15`` or as ``150004``."""
    major = server_version // 10000 if server_version >= 1000 else server_version
    if not MIN_VERSION <= major <= MAX_VERSION:
        raise UnsupportedStatementError(
            f"PostgreSQL {major} is outside the versions with facts ({MIN_VERSION}-{MAX_VERSION})"
        )
    return major


def _fact(
    kind: StatementKind,
    table: LockMode | None,
    referenced: LockMode | None = None,
    *,
    rewrites: bool = False,
    scans: bool | None = None,
    note: str = "",
    partition: LockMode | None = None,
) -> LockFact:
    # A rewrite copies every row under the lock, so it scans too (TRUNCATE says otherwise).
    return LockFact(
        kind, table, referenced, rewrites, rewrites if scans is None else scans, note, partition
    )


_AX = M.ACCESS_EXCLUSIVE
_SRX = M.SHARE_ROW_EXCLUSIVE
_SUX = M.SHARE_UPDATE_EXCLUSIVE

# The facts of PostgreSQL 12, the oldest version covered; later versions patch them below.
_BASE: dict[StatementKind, LockFact] = {
    f.kind: f
    for f in (
        _fact(
            K.CREATE_TABLE,
            _AX,
            _SRX,
            note="a foreign key adds triggers on the referenced table under SHARE ROW EXCLUSIVE",
        ),
        _fact(
            K.DROP_TABLE,
            _AX,
            _AX,
            note="dropping a table that holds a foreign key drops its triggers on the referenced"
            " table under ACCESS EXCLUSIVE",
        ),
        _fact(K.RENAME_TABLE, _AX),
        _fact(K.ADD_COLUMN, _AX, note="a NULL or non-volatile default is stored in the catalog"),
        _fact(
            K.ADD_COLUMN_VOLATILE_DEFAULT,
            _AX,
            rewrites=True,
            note="a volatile default (random(), clock_timestamp(), gen_random_uuid()) is"
            " evaluated per row, so every row is rewritten",
        ),
        _fact(
            K.DROP_COLUMN,
            _AX,
            _AX,
            note="the column is only hidden; dropping a foreign key column drops the"
            " constraint's triggers on the referenced table under ACCESS EXCLUSIVE",
        ),
        _fact(K.RENAME_COLUMN, _AX),
        _fact(
            K.ALTER_COLUMN_TYPE,
            _AX,
            rewrites=True,
            note="binary-coercible changes (longer varchar, varchar to text, more numeric"
            " precision) neither rewrite nor scan: ask type_change_rewrites()",
        ),
        _fact(
            K.SET_NOT_NULL,
            _AX,
            scans=True,
            note="the scan is skipped when a valid CHECK (col IS NOT NULL) already exists",
        ),
        _fact(K.DROP_NOT_NULL, _AX),
        _fact(K.SET_DEFAULT, _AX, note="affects later inserts only; existing rows are untouched"),
        _fact(K.DROP_DEFAULT, _AX),
        _fact(
            K.ADD_UNIQUE_CONSTRAINT, _AX, scans=True, note="builds a unique index under the lock"
        ),
        _fact(
            K.ADD_UNIQUE_USING_INDEX,
            _AX,
            note="the index was built beforehand (CREATE UNIQUE INDEX CONCURRENTLY)",
        ),
        _fact(
            K.ADD_PRIMARY_KEY,
            _AX,
            scans=True,
            note="builds a unique index and sets NOT NULL under the lock",
        ),
        _fact(K.ADD_CHECK, _AX, scans=True, note="every row is checked under the lock"),
        _fact(K.ADD_CHECK_NOT_VALID, _AX, note="brief; only new and updated rows are checked"),
        _fact(
            K.ADD_FOREIGN_KEY,
            _SRX,
            _SRX,
            scans=True,
            note="every row is checked against the referenced table under the locks",
        ),
        _fact(K.ADD_FOREIGN_KEY_NOT_VALID, _SRX, _SRX, note="brief; existing rows are not checked"),
        _fact(
            K.VALIDATE_CONSTRAINT,
            _SUX,
            M.ROW_SHARE,
            scans=True,
            note="reads and writes continue; the referenced table is locked only for a foreign key",
        ),
        _fact(
            K.DROP_CONSTRAINT,
            _AX,
            _AX,
            note="the referenced table is locked only when the constraint is a foreign key",
        ),
        _fact(K.RENAME_CONSTRAINT, _AX),
        _fact(
            K.CREATE_INDEX, M.SHARE, scans=True, note="reads continue, writes wait for the build"
        ),
        _fact(
            K.CREATE_INDEX_CONCURRENTLY,
            _SUX,
            scans=True,
            note="two scans while reads and writes continue; cannot run inside a transaction",
        ),
        _fact(K.DROP_INDEX, _AX),
        _fact(
            K.DROP_INDEX_CONCURRENTLY,
            _SUX,
            note="waits for transactions using the index; cannot run inside a transaction",
        ),
        _fact(
            K.RENAME_INDEX,
            None,
            note="locks only the index itself (SHARE UPDATE EXCLUSIVE), not its table",
        ),
        _fact(
            K.REINDEX,
            M.SHARE,
            scans=True,
            note="the index is locked ACCESS EXCLUSIVE, so reads that use it wait too",
        ),
        _fact(
            K.REINDEX_CONCURRENTLY,
            _SUX,
            scans=True,
            note="cannot run inside a transaction",
        ),
        _fact(
            K.ATTACH_PARTITION,
            _SUX,
            scans=True,
            partition=_AX,
            note="the partition is scanned to prove its bounds unless a valid CHECK implies them",
        ),
        _fact(K.DETACH_PARTITION, _AX, partition=_AX),
        _fact(
            K.DETACH_PARTITION_CONCURRENTLY,
            _SUX,
            partition=_AX,
            note="two transactions: the first takes SHARE UPDATE EXCLUSIVE on both tables and"
            " waits for every transaction using the parent; the second takes ACCESS EXCLUSIVE"
            " on the partition only; cannot run inside a transaction",
        ),
        _fact(
            K.TRUNCATE,
            _AX,
            rewrites=True,
            scans=False,
            note="a new empty file replaces the table, no row is read; fails if another table"
            " references it",
        ),
        _fact(
            K.UPDATE,
            M.ROW_EXCLUSIVE,
            M.ROW_SHARE,
            note="row locks on every matched row; the referenced table is read only when a"
            " foreign key column changes (at COMMIT for Django's deferred constraints)",
        ),
        _fact(
            K.INSERT,
            M.ROW_EXCLUSIVE,
            M.ROW_SHARE,
            note="the foreign key check runs at COMMIT for Django's deferred constraints",
        ),
        _fact(K.DELETE, M.ROW_EXCLUSIVE, note="row locks on every matched row"),
        _fact(K.SET_LOCK_TIMEOUT, None),
        _fact(K.SET_STATEMENT_TIMEOUT, None),
    )
}

# Kinds a version before the one given cannot run at all.
_INTRODUCED: dict[StatementKind, int] = {
    # ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY: PostgreSQL 14 release notes.
    K.DETACH_PARTITION_CONCURRENTLY: 14,
    # ALTER TABLE ... ADD CONSTRAINT ... NOT NULL ... NOT VALID: PostgreSQL 18, which also
    # stores NOT NULL constraints in pg_constraint.
    K.ADD_NOT_NULL_NOT_VALID: 18,
}

# Facts that changed inside 12-18: (first version with the new fact, fact).
_CHANGES: tuple[tuple[int, LockFact], ...] = (
    (
        18,
        _fact(
            K.ADD_NOT_NULL_NOT_VALID,
            _AX,
            note="brief; VALIDATE CONSTRAINT later scans under SHARE UPDATE EXCLUSIVE, and"
            " SET NOT NULL then skips its scan",
        ),
    ),
)


class PostgreSQLFacts:
    """Lock, rewrite and scan facts for PostgreSQL 12-18."""

    vendor = "postgresql"

    def lock(self, kind: StatementKind, server_version: int) -> LockFact:
        """Return what *kind* does on *server_version* (``15`` or ``150004``)."""
        major = major_version(server_version)
        first = _INTRODUCED.get(kind)
        if first is not None and major < first:
            raise UnsupportedStatementError(
                f"{kind.name} needs PostgreSQL {first} or later (server is {major})"
            )
        fact = _BASE.get(kind)
        for since, changed in _CHANGES:
            if changed.kind is kind and major >= since:
                fact = changed
        if fact is None:
            if kind is K.OTHER:
                return _fact(K.OTHER, None, note="not modelled: treat as unknown, not as safe")
            raise UnsupportedStatementError(f"no PostgreSQL fact for {kind.name}")
        return fact

    def type_change_rewrites(self, old_db_type: str, new_db_type: str, server_version: int) -> bool:
        """Return True unless the change is binary-coercible, so PostgreSQL skips the rewrite.

        timestamp <-> timestamptz is free on 12+ only when the session TimeZone is UTC,
        which Django sets for its connections when USE_TZ is True.
        """
        major_version(server_version)
        old, new = parse_db_type(old_db_type), parse_db_type(new_db_type)
        if old == new:
            return False
        return not _binary_coercible(old, new)

    def type_change_narrows(self, old_db_type: str, new_db_type: str) -> bool:
        """Return True if a value of *old_db_type* may fail to convert to *new_db_type*."""
        return narrows(parse_db_type(old_db_type), parse_db_type(new_db_type))


def _binary_coercible(old: DbType, new: DbType) -> bool:
    if old.base in ("varchar", "text") and new.base in ("varchar", "text"):
        # Dropping or raising the length limit needs no check; lowering it checks every row.
        if new.base == "text" or new.length is None:
            return True
        return old.base == "varchar" and old.length is not None and new.length >= old.length
    if old.base == new.base == "numeric":
        if new.precision is None:
            return True
        return (
            old.precision is not None and old.scale == new.scale and new.precision >= old.precision
        )
    if {old.base, new.base} == {"timestamp", "timestamptz"}:
        return old.precision == new.precision
    return old.base == new.base == "cidr" or (old.base, new.base) == ("cidr", "inet")
