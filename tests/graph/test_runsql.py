"""RunSQL and Django's statements parsed into actions."""

from __future__ import annotations

import pytest

from django_rollout.errors import RolloutError
from django_rollout.graph.runsql import SqlAction, SqlParseError, parse_sql, parse_sql_safe
from django_rollout.vendors import StatementKind

K = StatementKind


def one(sql: str) -> SqlAction:
    actions = parse_sql(sql)
    assert len(actions) == 1, actions
    return actions[0]


# One real statement per kind: (kind, sql, expected attributes).
EXAMPLES: list[tuple[StatementKind, str, dict[str, object]]] = [
    (
        K.CREATE_TABLE,
        'CREATE TABLE "shop_item" ("id" bigint NOT NULL PRIMARY KEY, "name" text)',
        {"table": "shop_item", "columns": ("id", "name")},
    ),
    (K.DROP_TABLE, 'DROP TABLE "shop_item" CASCADE', {"table": "shop_item"}),
    (
        K.RENAME_TABLE,
        'ALTER TABLE "shop_item" RENAME TO "shop_product"',
        {"table": "shop_item", "new_name": "shop_product"},
    ),
    (
        K.ADD_COLUMN,
        'ALTER TABLE "shop_item" ADD COLUMN "price" integer DEFAULT 0 NOT NULL',
        {"table": "shop_item", "columns": ("price",)},
    ),
    (
        K.ADD_COLUMN_VOLATILE_DEFAULT,
        'ALTER TABLE "shop_item" ADD COLUMN "token" uuid DEFAULT gen_random_uuid() NOT NULL',
        {"columns": ("token",)},
    ),
    (K.DROP_COLUMN, 'ALTER TABLE "shop_item" DROP COLUMN "price" CASCADE', {"columns": ("price",)}),
    (
        K.RENAME_COLUMN,
        'ALTER TABLE "shop_item" RENAME COLUMN "name" TO "title"',
        {"columns": ("name",), "new_name": "title"},
    ),
    (
        K.ALTER_COLUMN_TYPE,
        'ALTER TABLE "shop_item" ALTER COLUMN "id" TYPE bigint USING "id"::bigint',
        {"columns": ("id",), "value": "bigint"},
    ),
    (
        K.SET_NOT_NULL,
        'ALTER TABLE "shop_item" ALTER COLUMN "name" SET NOT NULL',
        {"columns": ("name",)},
    ),
    (
        K.DROP_NOT_NULL,
        'ALTER TABLE "shop_item" ALTER COLUMN "name" DROP NOT NULL',
        {"columns": ("name",)},
    ),
    (
        K.SET_DEFAULT,
        "ALTER TABLE shop_item ALTER COLUMN name SET DEFAULT 'x'",
        {"columns": ("name",), "value": "'x'"},
    ),
    (
        K.DROP_DEFAULT,
        'ALTER TABLE "shop_item" ALTER COLUMN "name" DROP DEFAULT',
        {"columns": ("name",)},
    ),
    (
        K.ADD_UNIQUE_CONSTRAINT,
        'ALTER TABLE "shop_item" ADD CONSTRAINT "shop_item_name_key" UNIQUE ("name")',
        {"columns": ("name",), "constraint_name": "shop_item_name_key", "unique": True},
    ),
    (
        K.ADD_UNIQUE_USING_INDEX,
        "ALTER TABLE shop_item ADD CONSTRAINT shop_item_name_key"
        " UNIQUE USING INDEX shop_item_name_idx",
        {"index_name": "shop_item_name_idx"},
    ),
    (K.ADD_PRIMARY_KEY, "ALTER TABLE shop_item ADD PRIMARY KEY (id)", {"columns": ("id",)}),
    (
        K.ADD_CHECK,
        'ALTER TABLE "shop_item" ADD CONSTRAINT "price_gte_0" CHECK ("price" >= 0)',
        {"constraint_name": "price_gte_0"},
    ),
    (
        K.ADD_CHECK_NOT_VALID,
        "ALTER TABLE shop_item ADD CONSTRAINT price_gte_0 CHECK (price >= 0) NOT VALID",
        {},
    ),
    (
        K.ADD_FOREIGN_KEY,
        'ALTER TABLE "shop_item" ADD CONSTRAINT "shop_item_owner_id_fk" FOREIGN KEY ("owner_id")'
        ' REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED',
        {"columns": ("owner_id",), "referenced_table": "auth_user"},
    ),
    (
        K.ADD_FOREIGN_KEY_NOT_VALID,
        "ALTER TABLE shop_item ADD CONSTRAINT fk FOREIGN KEY (owner_id)"
        " REFERENCES auth_user NOT VALID",
        {"referenced_table": "auth_user"},
    ),
    (
        K.ADD_NOT_NULL_NOT_VALID,
        "ALTER TABLE shop_item ADD CONSTRAINT name_nn NOT NULL name NOT VALID",
        {"columns": ("name",)},
    ),
    (
        K.VALIDATE_CONSTRAINT,
        "ALTER TABLE shop_item VALIDATE CONSTRAINT fk",
        {"constraint_name": "fk"},
    ),
    (K.DROP_CONSTRAINT, 'ALTER TABLE "shop_item" DROP CONSTRAINT "fk"', {"constraint_name": "fk"}),
    (
        K.RENAME_CONSTRAINT,
        "ALTER TABLE shop_item RENAME CONSTRAINT fk TO fk2",
        {"constraint_name": "fk", "new_name": "fk2"},
    ),
    (
        K.CREATE_INDEX,
        'CREATE INDEX "shop_item_name_idx" ON "shop_item" ("name")',
        {"index_name": "shop_item_name_idx", "columns": ("name",)},
    ),
    (
        K.CREATE_INDEX_CONCURRENTLY,
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON shop_item (name) WHERE name <> ''",
        {"concurrently": True, "unique": True, "has_where": True},
    ),
    (
        K.DROP_INDEX,
        'DROP INDEX IF EXISTS "shop_item_name_idx"',
        {"index_name": "shop_item_name_idx"},
    ),
    (K.DROP_INDEX_CONCURRENTLY, "DROP INDEX CONCURRENTLY i", {"concurrently": True}),
    (K.RENAME_INDEX, "ALTER INDEX i RENAME TO j", {"index_name": "i", "new_name": "j"}),
    (K.REINDEX, "REINDEX TABLE shop_item", {"table": "shop_item"}),
    (K.REINDEX_CONCURRENTLY, "REINDEX INDEX CONCURRENTLY i", {"index_name": "i"}),
    (
        K.ATTACH_PARTITION,
        "ALTER TABLE events ATTACH PARTITION events_2024"
        " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        {"table": "events", "partition": "events_2024"},
    ),
    (
        K.DETACH_PARTITION,
        "ALTER TABLE events DETACH PARTITION events_2024",
        {"partition": "events_2024"},
    ),
    (
        K.DETACH_PARTITION_CONCURRENTLY,
        "ALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY",
        {"concurrently": True},
    ),
    (K.TRUNCATE, "TRUNCATE shop_item", {"table": "shop_item"}),
    (
        K.UPDATE,
        "UPDATE shop_item SET price = 0, name = 'x'",
        {"columns": ("price", "name"), "has_where": False},
    ),
    (
        K.INSERT,
        "INSERT INTO shop_item (id, name) VALUES (1, 'a') ON CONFLICT DO NOTHING",
        {"columns": ("id", "name")},
    ),
    (K.DELETE, "DELETE FROM shop_item WHERE price IS NULL", {"has_where": True}),
    (K.SET_LOCK_TIMEOUT, "SET lock_timeout = '5s'", {"value": "5s"}),
    (K.SET_STATEMENT_TIMEOUT, "SET LOCAL statement_timeout TO 30000", {"value": "30000"}),
    (K.OTHER, "DO $$ BEGIN PERFORM 1; END $$", {}),
]


@pytest.mark.parametrize(("kind", "sql", "expected"), EXAMPLES, ids=[e[0].value for e in EXAMPLES])
def test_parses_each_statement_kind(
    kind: StatementKind, sql: str, expected: dict[str, object]
) -> None:
    action = one(sql)
    assert action.kind is kind
    assert action.sql == sql
    for attribute, value in expected.items():
        assert getattr(action, attribute) == value, attribute


def test_every_statement_kind_has_an_example() -> None:
    assert {kind for kind, _, _ in EXAMPLES} == set(StatementKind)


@pytest.mark.parametrize(
    "default",
    [
        "NULL",
        "0",
        "'x'",
        "now()",
        "CURRENT_TIMESTAMP",
        "statement_timestamp()",
        "'{}'::jsonb",
        "lower('X')",
    ],
)
def test_non_volatile_default_is_a_plain_add_column(default: str) -> None:
    assert one(f"ALTER TABLE t ADD COLUMN c text DEFAULT {default}").kind is K.ADD_COLUMN


def test_nullable_column_without_default_is_a_plain_add_column() -> None:
    assert one("ALTER TABLE t ADD COLUMN x int NULL").kind is K.ADD_COLUMN


@pytest.mark.parametrize(
    "definition",
    [
        "float8 DEFAULT random()",
        "uuid DEFAULT gen_random_uuid()",
        "timestamptz DEFAULT clock_timestamp()",
        "int DEFAULT my_func()",  # user functions are VOLATILE unless declared otherwise
        "bigserial",
        "bigint GENERATED BY DEFAULT AS IDENTITY",
        "int GENERATED ALWAYS AS (a * 2) STORED",
        "text DEFAULT md5(random()::text)",
    ],
)
def test_volatile_default_rewrites(definition: str) -> None:
    assert one(f"ALTER TABLE t ADD COLUMN c {definition}").kind is K.ADD_COLUMN_VOLATILE_DEFAULT


def test_alter_table_with_several_subcommands_yields_one_action_each() -> None:
    sql = (
        "ALTER TABLE t ADD COLUMN a int, ALTER COLUMN b SET NOT NULL,"
        " ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id), DROP COLUMN c"
    )
    actions = parse_sql(sql)
    assert [a.kind for a in actions] == [
        K.ADD_COLUMN,
        K.SET_NOT_NULL,
        K.ADD_FOREIGN_KEY,
        K.DROP_COLUMN,
    ]
    assert {a.table for a in actions} == {"t"}
    assert all(a.sql == sql for a in actions)


def test_django_inline_foreign_key_column_adds_the_constraint_too() -> None:
    actions = parse_sql(
        'ALTER TABLE "shop_item" ADD COLUMN "owner_id" integer NULL CONSTRAINT'
        ' "shop_item_owner_id_fk" REFERENCES "auth_user"("id") DEFERRABLE INITIALLY DEFERRED;'
        ' SET CONSTRAINTS "shop_item_owner_id_fk" IMMEDIATE'
    )
    assert [(a.kind, a.referenced_table) for a in actions] == [
        (K.ADD_COLUMN, None),
        (K.ADD_FOREIGN_KEY, "auth_user"),
        (K.OTHER, None),
    ]


def test_create_table_yields_one_action_per_referenced_table() -> None:
    actions = parse_sql(
        "CREATE TABLE m (id int PRIMARY KEY, a_id int REFERENCES a, b_id int,"
        " FOREIGN KEY (b_id) REFERENCES b (id))"
    )
    assert [(a.kind, a.table, a.referenced_table) for a in actions] == [
        (K.CREATE_TABLE, "m", "a"),
        (K.CREATE_TABLE, "m", "b"),
    ]


def test_multi_statement_string_keeps_order_and_text() -> None:
    actions = parse_sql(
        "SET lock_timeout = '3s';\nCREATE INDEX i ON t (a);\n-- done\nUPDATE t SET a = 1 WHERE b"
    )
    assert [a.kind for a in actions] == [K.SET_LOCK_TIMEOUT, K.CREATE_INDEX, K.UPDATE]
    assert [a.sql for a in actions] == [
        "SET lock_timeout = '3s'",
        "CREATE INDEX i ON t (a)",
        "UPDATE t SET a = 1 WHERE b",
    ]


def test_statement_text_survives_non_ascii() -> None:
    actions = parse_sql("UPDATE t SET a = 'é€'; DELETE FROM t")
    assert actions[1].sql == "DELETE FROM t"


def test_list_form_with_params_and_strings() -> None:
    actions = parse_sql(
        [
            "TRUNCATE a, b",
            ("UPDATE t SET name = %s WHERE name LIKE '%%x'", ["y"]),
            ("INSERT INTO t (name) VALUES (%(name)s)", {"name": "z"}),
            ("DELETE FROM t", None),
        ]
    )
    assert [(a.kind, a.table) for a in actions] == [
        (K.TRUNCATE, "a"),
        (K.TRUNCATE, "b"),
        (K.UPDATE, "t"),
        (K.INSERT, "t"),
        (K.DELETE, "t"),
    ]
    assert actions[2].has_where


def test_quoted_and_schema_qualified_names_are_unqualified_and_lower_cased() -> None:
    action = one('ALTER TABLE "public"."Shop_Item" ADD COLUMN "Price" int')
    assert (action.table, action.columns) == ("shop_item", ("price",))
    assert one("DROP INDEX public.i").index_name == "i"
    assert one("UPDATE s.t SET a = 1").table == "t"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "DO $$ BEGIN UPDATE t SET a = 1; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE VIEW v AS SELECT 1",
        "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
        "ALTER TABLE t SET (fillfactor = 70)",
        "ALTER SEQUENCE s RESTART",
        "SET search_path = public",
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        "COMMENT ON TABLE t IS 'x'",
        "CREATE MATERIALIZED VIEW mv AS SELECT 1",
        "ALTER VIEW v RENAME TO w",
    ],
)
def test_statements_outside_the_model_are_other(sql: str) -> None:
    assert {a.kind for a in parse_sql(sql)} == {K.OTHER}


def test_empty_sql_yields_nothing() -> None:
    assert parse_sql("") == ()
    assert parse_sql([]) == ()
    assert parse_sql("-- nothing\n") == ()


def test_unparseable_sql_raises_one_line_rollout_error() -> None:
    with pytest.raises(SqlParseError) as info:
        parse_sql("CREATE INDEX i ON t (a); ALTER TABLE t ADD COLUM x int")
    assert isinstance(info.value, RolloutError)
    assert "\n" not in str(info.value)
    assert "ADD COLUM" in str(info.value)


def test_parse_sql_safe_returns_the_error() -> None:
    actions, error = parse_sql_safe("ALTER TABLE")
    assert actions == () and isinstance(error, SqlParseError)
    actions, error = parse_sql_safe("DROP TABLE t")
    assert error is None and actions[0].kind is K.DROP_TABLE


def test_sqlite_statements_the_grammar_refuses_are_other() -> None:
    actions = parse_sql("PRAGMA foreign_keys = OFF; UPDATE t SET a = 1", vendor="sqlite")
    assert [a.kind for a in actions] == [K.OTHER, K.UPDATE]
    assert actions[0].sql == "PRAGMA foreign_keys = OFF"


def test_bad_list_item_is_refused() -> None:
    with pytest.raises(SqlParseError):
        parse_sql([42])


def test_noop_sql_does_not_import_pglast() -> None:
    """``RunSQL.noop`` parses to nothing without pglast's import (a tenth of a second)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from django_rollout.graph.runsql import parse_sql\n"
        "assert parse_sql('') == () and parse_sql(['  ', '']) == ()\n"
        "assert 'pglast' not in sys.modules, 'imported for nothing'\n"
        "assert parse_sql('SELECT 1')\n"
        "assert 'pglast' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
