"""What an error of PostgreSQL tells ``observe``: the table, where the text names it."""

from __future__ import annotations

import psycopg
import pytest
from _sql import pg_schema

from django_rollout.db.traffic import observe


@pytest.mark.parametrize(
    ("column", "sqlstate"),
    # sum() takes no row: PostgreSQL falls back to the missing column's own error.
    [("count", "42803"), ("sum", "42703"), ("price", "42703")],
    ids=["read-as-count-of-the-row", "named-like-another-aggregate", "plain-missing-column"],
)
def test_a_missing_column_names_its_table(column: str, sqlstate: str) -> None:
    # An ORM's SELECT of a column gone from the table: PostgreSQL reads `t.count` as count(t).
    with pg_schema() as pg:
        pg.execute("CREATE TABLE shop_item (id bigint PRIMARY KEY, name text)")
        with pytest.raises(psycopg.Error) as error:
            pg.execute(f'SELECT "shop_item"."id", "shop_item"."{column}" FROM "shop_item"')
    found = observe(error.value)
    assert (found.sqlstate, found.table) == (sqlstate, "shop_item"), found
    assert found.column == (column if sqlstate == "42703" else None)
