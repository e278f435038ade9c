"""Snapshot a live database's schema: tables, columns, indexes and constraints.

``doctor`` compares what ``django_migrations`` says is applied with what the database really
has. Names cannot be trusted for that: Django derives index and constraint names from hashes,
and a squashed history, a ``RenameIndex`` or a hand-written ``RunSQL`` reach the same schema
under other names. So every index and constraint has a ``key``: its definition, without its
name; the name stays as evidence for reports.

The whole database is read in a fixed number of catalogue queries (three on PostgreSQL, four
on SQLite), however many tables it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django_rollout.db.state import _Cursor, _cursor
from django_rollout.errors import DeployedStateError

IndexKey = tuple[tuple[str, ...], bool, bool, str]
ConstraintKey = tuple[str, tuple[str, ...], tuple[str, tuple[str, ...]] | None]


@dataclass(frozen=True)
class Column:
    """A column as the database has it; ``type`` is spelled by ``canonical_type``."""

    name: str
    type: str
    null: bool
    default: str | None  # the DB default's SQL text; None for identity and generated columns
    identity: bool  # GENERATED AS IDENTITY, a nextval() default, or SQLite's rowid alias
    generated: bool = False  # GENERATED ALWAYS AS (...): computed, never written


@dataclass(frozen=True)
class Index:
    """An index; ``columns`` holds an expression part as its SQL text in parentheses."""

    name: str
    columns: tuple[str, ...]  # key columns only, in order (INCLUDE columns are left out)
    unique: bool
    primary: bool
    partial: bool
    method: str  # btree, gin, ...; always "btree" on SQLite
    valid: bool  # False after an interrupted CREATE INDEX CONCURRENTLY
    # Per key column, a non-default operator class ("" for the default one); () when all are
    # default. It tells Django's varchar_pattern_ops "_like" index from the plain one beside it.
    opclasses: tuple[str, ...] = ()

    @property
    def key(self) -> IndexKey:
        """Return the definition that identifies this index, without its name."""
        return (self.columns, self.unique, self.partial, self.method)


@dataclass(frozen=True)
class Constraint:
    """A primary key, unique, check, foreign-key or exclusion constraint."""

    name: str  # "" where SQLite keeps no name (primary keys, foreign keys)
    kind: str  # "primary" | "unique" | "check" | "foreign" | "exclude"
    columns: tuple[str, ...]  # a check's are the columns it mentions, sorted
    references: tuple[str, tuple[str, ...]] | None  # a foreign key's (table, columns)
    definition: str  # the database's own text, as evidence
    validated: bool  # False for NOT VALID
    deferrable: bool

    @property
    def key(self) -> ConstraintKey:
        """Return the definition that identifies this constraint, without its name."""
        return (self.kind, self.columns, self.references)


@dataclass(frozen=True)
class Table:
    """A table with its columns (in their order in the table), indexes and constraints."""

    name: str
    columns: Mapping[str, Column]
    indexes: tuple[Index, ...] = ()
    constraints: tuple[Constraint, ...] = ()

    def has_unique(self, columns: Iterable[str]) -> bool:
        """Return whether rows are unique on exactly ``columns``, taken in any order.

        A primary key, a unique constraint or a unique index counts; a partial index makes
        only some rows unique and an invalid one none, so neither counts.
        """
        wanted = sorted(columns)
        if any(
            c.kind in ("primary", "unique") and sorted(c.columns) == wanted
            for c in self.constraints
        ):
            return True
        return any(
            i.unique and i.valid and not i.partial and sorted(i.columns) == wanted
            for i in self.indexes
        )

    def has_index(self, columns: Iterable[str], *, unique: bool | None = None) -> bool:
        """Return whether a valid, non-partial index has exactly ``columns``, in this order.

        An index on more columns does not count, even when it starts with these. ``unique``
        True or False also asks whether the index is unique; None accepts either.
        """
        wanted = tuple(columns)
        return any(
            i.columns == wanted and i.valid and not i.partial and unique in (None, i.unique)
            for i in self.indexes
        )

    def foreign_keys(self) -> tuple[Constraint, ...]:
        """Return the foreign-key constraints, in the order they were read."""
        return tuple(c for c in self.constraints if c.kind == "foreign")


@dataclass(frozen=True)
class Schema:
    """Every table of a database's search path (PostgreSQL) or main schema (SQLite)."""

    vendor: str
    tables: Mapping[str, Table]
    queries: int  # statements introspection ran: fixed, whatever the number of tables


def read_schema(target: str) -> Schema:
    """Return the schema of the database named by an alias or a URL."""
    with _cursor(target) as (vendor, cursor, _server):
        return introspect(cursor, vendor)


def introspect(cursor: _Cursor, vendor: str) -> Schema:
    """Read every table of the database in a fixed number of catalogue queries."""
    reader = _Reader(cursor)
    if vendor == "postgresql":
        tables = _postgresql(reader)
    elif vendor == "sqlite":
        tables = _sqlite(reader)
    else:
        raise DeployedStateError(f"cannot read the schema of a {vendor} database")
    built = {
        name: Table(name, MappingProxyType(columns), tuple(indexes), tuple(constraints))
        for name, (columns, indexes, constraints) in sorted(tables.items())
    }
    return Schema(vendor, MappingProxyType(built), reader.queries)


# -- column types -----------------------------------------------------------------------------

_SYNONYMS = {
    "character varying": "varchar",
    **dict.fromkeys(("character", "bpchar"), "char"),
    **dict.fromkeys(("int", "int4", "serial", "serial4"), "integer"),
    **dict.fromkeys(("int8", "bigserial", "serial8"), "bigint"),
    **dict.fromkeys(("int2", "smallserial", "serial2"), "smallint"),
    "bool": "boolean",
    "float8": "double precision",
    "float4": "real",
    "decimal": "numeric",
    "varbit": "bit varying",
}
_ZONED = {"timestamptz": "timestamp", "timetz": "time"}
_TYPE = re.compile(r"(?P<base>[^(]+?)(?P<args>\(.*\))?(?P<zone> with(?:out)? time zone)?")


def canonical_type(text: str) -> str:
    """Return one spelling of a column type, shared by the database's catalogue and Django's
    db_type().

    Lowercase, single spaces, no spaces inside the parentheses, PostgreSQL's long names and
    aliases mapped to Django's spelling, any identity suffix dropped. An array's declared
    size is dropped too: PostgreSQL records ``integer[3]`` as ``integer[]``.
    """
    spelled = " ".join(text.lower().split())
    spelled = re.sub(r"\s*generated (?:by default|always) as identity$", "", spelled)
    spelled = re.sub(r"\s*\(\s*", "(", spelled)
    spelled = re.sub(r"\s*,\s*", ",", spelled)
    spelled = re.sub(r"\s+\)", ")", spelled)
    array = re.search(r"(?:\s*\[\d*\])+$", spelled)
    dims = "[]" * array.group().count("[") if array else ""
    spelled = spelled[: array.start()] if array else spelled
    parts = _TYPE.fullmatch(spelled)
    if parts is None:
        return spelled + dims
    base, args, zone = parts.group("base").strip(), parts["args"] or "", parts["zone"] or ""
    if base in _ZONED:
        base, zone = _ZONED[base], " with time zone"
    zone = "" if zone == " without time zone" else zone
    return f"{_SYNONYMS.get(base, base)}{args}{zone}{dims}"


# -- reading ----------------------------------------------------------------------------------

_Parts = tuple[dict[str, Column], list[Index], list[Constraint]]


class _Reader:
    """Run catalogue queries and count them."""

    def __init__(self, cursor: _Cursor) -> None:
        self.cursor = cursor
        self.queries = 0

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        self.queries += 1
        self.cursor.execute(sql)
        return list(self.cursor.fetchall())


# pg_table_is_visible: of two tables with one name on the search path, the application
# reaches the first; current_schemas(false) leaves out pg_catalog and other implicit schemas.
_PG_TABLES = """
WITH t AS (
    SELECT c.oid, c.relname::text AS relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))
      AND pg_table_is_visible(c.oid)
)
"""
_PG_COLUMNS = f"""{_PG_TABLES}
SELECT t.relname, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text
FROM t
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
ORDER BY t.relname, a.attnum
"""
_PG_INDEXES = f"""{_PG_TABLES}
SELECT t.relname, i.relname::text, x.indisunique, x.indisprimary, x.indpred IS NOT NULL,
       am.amname::text, x.indisvalid,
       ARRAY(
           SELECT CASE WHEN k.attnum = 0
                       THEN '(' || pg_get_indexdef(x.indexrelid, k.ord::int, true) || ')'
                       ELSE a.attname::text END
           FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
           LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
           WHERE k.ord <= x.indnkeyatts
           ORDER BY k.ord
       ),
       ARRAY(
           SELECT CASE WHEN o.opcdefault THEN '' ELSE o.opcname::text END
           FROM unnest(x.indclass::oid[]) WITH ORDINALITY AS c (oid, ord)
           JOIN pg_opclass o ON o.oid = c.oid
           ORDER BY c.ord
       )
FROM t
JOIN pg_index x ON x.indrelid = t.oid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_am am ON am.oid = i.relam
ORDER BY t.relname, i.relname
"""
# A foreign key to a partitioned table adds one hidden child constraint per partition on the
# referencing table (conparentid: the visible one there); those are no constraints of its own.
_PG_CONSTRAINTS = f"""{_PG_TABLES}
SELECT t.relname, con.conname::text, con.contype::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k (attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       f.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k (attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       pg_get_constraintdef(con.oid, true), con.convalidated, con.condeferrable
FROM t
JOIN pg_constraint con ON con.conrelid = t.oid
LEFT JOIN pg_class f ON f.oid = con.confrelid
WHERE con.contype IN ('p', 'u', 'c', 'f', 'x')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint p
                  WHERE p.oid = con.conparentid AND p.conrelid = con.conrelid)
ORDER BY t.relname, con.conname
"""
_PG_KINDS = {"p": "primary", "u": "unique", "c": "check", "f": "foreign", "x": "exclude"}


def _postgresql(reader: _Reader) -> dict[str, _Parts]:
    tables: dict[str, _Parts] = {}
    for table, name, type_, notnull, default, identity, generated in reader.rows(_PG_COLUMNS):
        columns = tables.setdefault(table, ({}, [], []))[0]
        if name is None:  # a table without columns: CREATE TABLE t ()
            continue
        serial = default is not None and str(default).startswith("nextval(")
        computed, identity = bool(generated), bool(identity) or serial
        default = None if identity or computed else default
        spelled = canonical_type(type_)
        columns[name] = Column(name, spelled, not notnull, default, identity, computed)
    for table, name, *flags, keys, opclasses in reader.rows(_PG_INDEXES):
        unique, primary, partial, method, valid = flags
        ops = tuple(opclasses) if any(opclasses) else ()
        tables[table][1].append(
            Index(name, tuple(keys), unique, primary, partial, method, valid, ops)
        )
    for row in reader.rows(_PG_CONSTRAINTS):
        table, name, contype, keys, target, target_keys, definition, validated, deferrable = row
        kind = _PG_KINDS[contype]
        columns_of = tuple(sorted(keys)) if kind == "check" else tuple(keys)
        references = (target, tuple(target_keys)) if kind == "foreign" else None
        tables[table][2].append(
            Constraint(name, kind, columns_of, references, definition, validated, deferrable)
        )
    return tables


# "_" matches any character in LIKE: escape it, or a table named "sqliteish" would vanish.
_LITE = r"m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'"
_LITE_TABLES = f"SELECT m.name, m.sql FROM sqlite_master m WHERE {_LITE} ORDER BY m.name"
_LITE_COLUMNS = f"""
SELECT m.name, p.name, p.type, p."notnull", p.dflt_value, p.pk, p.hidden
FROM sqlite_master m JOIN pragma_table_xinfo(m.name) p
WHERE {_LITE} ORDER BY m.name, p.cid
"""
_LITE_INDEXES = f"""
SELECT m.name, l.name, l."unique", l.origin, l.partial, i.name, s.sql
FROM sqlite_master m JOIN pragma_index_list(m.name) l JOIN pragma_index_info(l.name) i
LEFT JOIN sqlite_master s ON s.type = 'index' AND s.name = l.name
WHERE {_LITE} ORDER BY m.name, l.name, i.seqno
"""
_LITE_FOREIGN = f"""
SELECT m.name, f.id, f."table", f."from", f."to"
FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
WHERE {_LITE} ORDER BY m.name, f.id, f.seq
"""


def _sqlite(reader: _Reader) -> dict[str, _Parts]:
    bodies = {str(name): str(sql or "") for name, sql in reader.rows(_LITE_TABLES)}
    tables: dict[str, _Parts] = {name: ({}, [], []) for name in bodies}
    rows: dict[str, list[Any]] = {name: [] for name in bodies}
    for table, *column in reader.rows(_LITE_COLUMNS):
        rows[table].append(column)
    primary = {
        table: tuple(r[0] for r in sorted(found, key=lambda r: r[4]) if r[4])
        for table, found in rows.items()
    }
    for table, (columns, _, constraints) in tables.items():
        keys = primary[table]
        for name, type_, notnull, default, pk, hidden in rows[table]:
            # Only a lone primary key declared exactly INTEGER is the rowid (and never NULL).
            rowid = bool(pk) and len(keys) == 1 and str(type_).upper() == "INTEGER"
            if hidden != 1:  # 1: a virtual table's hidden column; 2 and 3: generated ones
                null = not notnull and not rowid
                columns[name] = Column(
                    name, canonical_type(type_), null, default, rowid, hidden > 1
                )
        if keys:
            constraints.append(_made("primary", keys, f"PRIMARY KEY ({', '.join(keys)})"))

    indexes: dict[tuple[str, str], list[Any]] = {}
    for table, name, unique, origin, partial, column, sql in reader.rows(_LITE_INDEXES):
        indexes.setdefault((table, name), [unique, origin, partial, sql, []])[4].append(column)
    for (table, name), (unique, origin, partial, sql, parts) in indexes.items():
        # An expression has no column name: its text is in the CREATE INDEX statement.
        texts = _index_parts(sql or "")
        keys = tuple(p or (texts[n] if n < len(texts) else "(?)") for n, p in enumerate(parts))
        index = Index(name, keys, bool(unique), origin == "pk", bool(partial), "btree", True)
        tables[table][1].append(index)
        if origin == "u":  # a UNIQUE clause of CREATE TABLE, not a CREATE UNIQUE INDEX
            unique_of = _made("unique", keys, f"UNIQUE ({', '.join(keys)})", name=name)
            tables[table][2].append(unique_of)

    foreign: dict[tuple[str, int], list[Any]] = {}
    for table, number, target, source, to in reader.rows(_LITE_FOREIGN):
        pair = foreign.setdefault((table, number), [target, [], []])
        pair[1].append(source)
        pair[2].append(to)
    parsed = {table: _body(sql) for table, sql in bodies.items()}
    for table, parts in parsed.items():
        tables[table][2].extend(_checks(bodies[table], parts, tables[table][0]))
    for (table, _), (target, sources, tos) in foreign.items():
        # REFERENCES t without columns means t's primary key.
        targets = tuple(tos) if None not in tos else primary.get(target, ())
        lazy = _deferrable(parsed[table]).get(tuple(s.lower() for s in sources), False)
        text = f"FOREIGN KEY ({', '.join(sources)}) REFERENCES {target}({', '.join(targets)})"
        text += " DEFERRABLE INITIALLY DEFERRED" if lazy else ""
        key = _made("foreign", tuple(sources), text, references=(target, targets), lazy=lazy)
        tables[table][2].append(key)
    return tables


def _made(
    kind: str,
    columns: tuple[str, ...],
    definition: str,
    *,
    name: str = "",
    references: tuple[str, tuple[str, ...]] | None = None,
    lazy: bool = False,
) -> Constraint:
    """Return a constraint of SQLite, which keeps no NOT VALID ones."""
    return Constraint(name, kind, columns, references, definition, True, lazy)


# -- SQLite's CREATE text: the only place it keeps checks, deferrability and index expressions

_TOKEN = re.compile(
    r"""(?P<string>'(?:[^']|'')*')
      |(?P<ident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
      |(?P<word>[^\W\d]\w*)
      |(?P<skip>\s+|--[^\n]*|/\*.*?(?:\*/|$))
      |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int

    @property
    def value(self) -> str:
        """Return the identifier this token names, unquoted."""
        if self.kind != "ident":
            return self.text
        inner = self.text[1:-1]
        return inner if self.text[0] == "[" else inner.replace(self.text[0] * 2, self.text[0])

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


def _tokens(sql: str) -> list[_Token]:
    return [
        _Token(str(m.lastgroup), m.group(), m.start(), m.end())
        for m in _TOKEN.finditer(sql)
        if m.lastgroup != "skip"
    ]


def _group(tokens: list[_Token], opening: int) -> tuple[list[list[_Token]], int] | None:
    """Split what the parenthesis at ``opening`` encloses on its top-level commas.

    Return the parts and the index of the closing parenthesis, or None when it never closes.
    """
    parts: list[list[_Token]] = [[]]
    depth = 0
    for at in range(opening + 1, len(tokens)):
        token = tokens[at]
        if token.text == ")" and depth == 0:
            return [part for part in parts if part], at
        if token.text == "," and depth == 0:
            parts.append([])
            continue
        depth += (token.text == "(") - (token.text == ")")
        parts[-1].append(token)
    return None


def _body(sql: str) -> list[list[_Token]]:
    """Return the column definitions and table constraints of a CREATE TABLE."""
    tokens = _tokens(sql)
    opening = next((at for at, token in enumerate(tokens) if token.text == "("), None)
    found = None if opening is None else _group(tokens, opening)
    return found[0] if found else []


def _checks(sql: str, parts: list[list[_Token]], columns: Mapping[str, Column]) -> list[Constraint]:
    """Return each CHECK clause, column-level or table-level, with the columns it mentions."""
    names = {name.lower(): name for name in columns}
    checks = []
    for part in parts:
        for at, token in enumerate(part[:-1]):
            if not (token.is_word("check") and part[at + 1].text == "("):
                continue
            found = _group(part, at + 1)
            if found is None:
                continue
            inside = part[at + 2 : found[1]]
            mentioned = {
                names[t.value.lower()]
                for n, t in enumerate(inside)
                if t.kind in ("ident", "word")
                and t.value.lower() in names
                # a function call, not a column
                and not (t.kind == "word" and n + 1 < len(inside) and inside[n + 1].text == "(")
            }
            name = part[at - 1].value if at >= 2 and part[at - 2].is_word("constraint") else ""
            text = sql[token.start : part[found[1]].end]
            checks.append(_made("check", tuple(sorted(mentioned)), text, name=name))
    return checks


def _deferrable(parts: list[list[_Token]]) -> dict[tuple[str, ...], bool]:
    """Return, for each foreign key's columns (lowercase), whether it is DEFERRABLE."""
    found = {}
    for part in parts:
        refs = next((at for at, t in enumerate(part) if t.is_word("references")), None)
        if refs is None:
            continue
        first = 2 if part[0].is_word("constraint") and len(part) > 2 else 0
        sources: tuple[str, ...] = (part[0].value,)
        if part[first].is_word("foreign"):
            opening = next((at for at in range(first, refs) if part[at].text == "("), None)
            group = None if opening is None else _group(part, opening)
            sources = tuple(p[0].value for p in group[0]) if group else ()
        tail = part[refs:]
        lazy = any(
            t.is_word("deferrable") and not tail[n - 1].is_word("not") for n, t in enumerate(tail)
        )
        found[tuple(s.lower() for s in sources)] = lazy
    return found


def _index_parts(sql: str) -> list[str]:
    """Return the text of each part of a CREATE INDEX, an expression in parentheses."""
    tokens = _tokens(sql)
    on = next((at for at, token in enumerate(tokens) if token.is_word("on")), len(tokens))
    opening = next((at for at in range(on, len(tokens)) if tokens[at].text == "("), None)
    found = None if opening is None else _group(tokens, opening)
    texts = []
    for part in found[0] if found else []:
        while len(part) > 1 and part[-1].is_word("asc", "desc"):
            part = part[:-1]
        text = sql[part[0].start : part[-1].end]
        whole = part[0].text == "(" and (_group(part, 0) or ([], -1))[1] == len(part) - 1
        texts.append(text if whole else f"({text})")
    return texts
