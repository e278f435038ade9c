"""Turn raw SQL (``RunSQL`` and Django's own statements) into structured statement facts.

SQL is parsed with PostgreSQL's own grammar through ``pglast`` (``_pgsql``, imported on
first use); nothing here matches
SQL text with regular expressions. Every statement the rules cannot reason about
becomes ``StatementKind.OTHER``, which rules treat as unknown, never as harmless.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django_rollout.errors import RolloutError
from django_rollout.vendors.base import StatementKind

K = StatementKind


class SqlParseError(RolloutError):
    """SQL given to ``RunSQL`` (or collected from Django) does not parse."""


@dataclass(frozen=True)
class SqlAction:
    """One thing one statement does to one table.

    An ALTER TABLE with several subcommands, a TRUNCATE of several tables and a column
    added with an inline foreign key each yield several actions sharing ``sql``.
    """

    kind: StatementKind
    table: str | None
    columns: tuple[str, ...] = ()
    referenced_table: str | None = None
    concurrently: bool = False
    has_where: bool = False
    index_name: str | None = None
    new_name: str | None = None
    sql: str = field(default="", compare=False)
    value: str | None = None
    constraint_name: str | None = None
    unique: bool = False
    partition: str | None = None


# Functions that return a different value per row: a column added with one as its default
# is rewritten. now()/statement_timestamp()/CURRENT_TIMESTAMP are stable (one value per
# statement), so PostgreSQL stores them once and skips the rewrite.
_VOLATILE = frozenset(
    {
        "random",
        "random_normal",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "nextval",
        "setval",
        "txid_current",
        "pg_current_xact_id",
    }
)
# Built-in functions known not to be volatile. Any other function counts as volatile,
# because CREATE FUNCTION makes a function VOLATILE unless told otherwise.
_NOT_VOLATILE = frozenset(
    {
        "now",
        "statement_timestamp",
        "transaction_timestamp",
        "current_date",
        "lower",
        "upper",
        "length",
        "concat",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "abs",
        "round",
        "trim",
        "btrim",
        "md5",
        "to_char",
        "to_timestamp",
        "make_interval",
        "jsonb_build_object",
        "jsonb_build_array",
        "json_build_object",
        "array_to_string",
        "timezone",
    }
)
_SERIAL_TYPES = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})


def parse_sql(sql: str | Sequence[Any], vendor: str = "postgresql") -> tuple[SqlAction, ...]:
    """Return the actions of *sql*, in the order they run.

    *sql* is what ``RunSQL`` accepts: a string, or a list of strings and ``(sql, params)``
    pairs. Raise :class:`SqlParseError` when a statement does not parse; for ``sqlite``
    such a statement (PRAGMA, SQLite-only syntax) becomes ``OTHER`` instead.
    """
    # ``RunSQL.noop`` and blank texts do nothing: they must not cost pglast's import.
    texts = [text for text in _statements_texts(sql) if text.strip()]
    if not texts:
        return ()
    actions: list[SqlAction] = []
    # pglast's AST module takes a tenth of a second to import: only projects with SQL pay it.
    from django_rollout.graph._pgsql import _parse_text

    for text in texts:
        actions.extend(_parse_text(text, vendor))
    return tuple(actions)


def parse_sql_safe(
    sql: str | Sequence[Any], vendor: str = "postgresql"
) -> tuple[tuple[SqlAction, ...], SqlParseError | None]:
    """Return ``(actions, None)``, or ``((), error)`` when *sql* does not parse."""
    try:
        return parse_sql(sql, vendor), None
    except SqlParseError as error:
        return (), error


def _statements_texts(sql: str | Sequence[Any]) -> Iterator[str]:
    if isinstance(sql, str):
        yield sql
        return
    for item in sql:
        if isinstance(item, str):
            yield item
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            yield _placeholders_to_params(item[0]) if item[1] is not None else item[0]
        else:
            raise SqlParseError(f"RunSQL item is neither SQL nor (sql, params): {item!r}")


def _placeholders_to_params(sql: str) -> str:
    """Replace the DB-API placeholders the driver fills (``%s``, ``%(name)s``, ``%%``) with
    ``$n`` parameters the grammar accepts."""
    out: list[str] = []
    i, n = 0, 0
    while i < len(sql):
        if sql.startswith("%%", i):
            out.append("%")
            i += 2
        elif sql.startswith("%s", i):
            n += 1
            out.append(f"${n}")
            i += 2
        elif sql.startswith("%(", i) and (end := sql.find(")s", i)) != -1:
            n += 1
            out.append(f"${n}")
            i = end + 2
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)
