"""Schema snapshots of a live database, compared by definition (real PostgreSQL, and SQLite)."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, connections, migrations, models
from django.db.migrations.state import ProjectState
from django.db.models import Q
from django.db.models.functions import Lower

from django_rollout.db.introspect import (
    Column,
    Constraint,
    Index,
    Schema,
    Table,
    canonical_type,
    introspect,
    read_schema,
)
from django_rollout.db.scratch import Scratch, scratch_database
from django_rollout.errors import DatabaseUnavailableError, DeployedStateError
from tests._project import PG, extra_aliases

PG_ALIAS = "rollout_introspect_pg"
LITE_ALIAS = "rollout_introspect_lite"
QUERIES = {"postgresql": 3, "sqlite": 4}


@pytest.fixture(autouse=True)
def aliases() -> Iterator[None]:
    with extra_aliases(PG_ALIAS, LITE_ALIAS):
        yield


def _state() -> ProjectState:
    """Return models that use every common field type, index and constraint."""
    operations = [
        migrations.CreateModel(
            "Category",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("name", models.CharField(max_length=100)),
            ],
        ),
        migrations.CreateModel(
            "Item",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("title", models.CharField(max_length=100)),
                ("free", models.CharField()),
                ("body", models.TextField(null=True)),
                ("count", models.IntegerField(db_default=0)),
                ("big", models.BigIntegerField()),
                ("small", models.SmallIntegerField()),
                ("stock", models.PositiveIntegerField()),
                ("rank", models.PositiveSmallIntegerField(null=True)),
                ("flag", models.BooleanField(default=False)),
                ("day", models.DateField(null=True)),
                ("moment", models.DateTimeField()),
                ("at", models.TimeField()),
                ("span", models.DurationField()),
                ("price", models.DecimalField(max_digits=10, decimal_places=2)),
                ("ratio", models.FloatField()),
                ("uid", models.UUIDField(unique=True)),
                ("meta", models.JSONField()),
                ("ip", models.GenericIPAddressField(null=True)),
                ("blob", models.BinaryField()),
                ("email", models.EmailField()),
                ("slug", models.SlugField()),
                ("category", models.ForeignKey("shelf.category", models.CASCADE)),
                (
                    "profile",
                    models.OneToOneField(
                        "shelf.category", models.CASCADE, null=True, related_name="+"
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["title"], condition=Q(flag=True), name="shelf_flagged"),
                    models.Index(Lower("title"), name="shelf_lower_title"),
                    models.Index(fields=["day", "moment"], name="shelf_day_moment"),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=["title", "category"], name="shelf_title_cat"),
                    models.CheckConstraint(condition=Q(price__gte=0), name="shelf_price_ok"),
                ],
                "unique_together": {("big", "small")},
            },
        ),
    ]
    project = ProjectState()
    for operation in operations:
        operation.state_forwards("shelf", project)
    return project


@pytest.fixture(params=[PG_ALIAS, LITE_ALIAS], ids=["postgresql", "sqlite"])
def empty(request: pytest.FixtureRequest) -> Iterator[Scratch]:
    with scratch_database(request.param) as scratch:
        yield scratch


@pytest.fixture
def created(empty: Scratch) -> tuple[Any, Scratch]:
    """Create the models' tables with Django's own schema editor."""
    apps = _state().apps
    with connections[empty.alias].schema_editor() as editor:
        for model in apps.get_models():
            editor.create_model(model)
    return apps, empty


@pytest.fixture
def pg() -> Iterator[Scratch]:
    with scratch_database(PG_ALIAS) as scratch:
        yield scratch


def _run(alias: str, *statements: str) -> None:
    with connections[alias].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _pg_url(scratch: Scratch) -> str:
    return f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{scratch.name}"


def _keys(table: Table) -> tuple[Counter[Any], Counter[Any]]:
    return Counter(i.key for i in table.indexes), Counter(c.key for c in table.constraints)


# -- what Django created, read back ---------------------------------------------------------


def test_reads_every_field_as_the_schema_editor_created_it(created: tuple[Any, Scratch]) -> None:
    apps, scratch = created
    connection = connections[scratch.alias]
    schema = read_schema(scratch.alias)
    assert schema.vendor == scratch.vendor
    assert set(schema.tables) == {"shelf_category", "shelf_item"}  # no sqlite_sequence
    for model in apps.get_models():
        table = schema.tables[model._meta.db_table]
        fields = model._meta.local_fields
        assert list(table.columns) == [f.column for f in fields]
        for field in fields:
            column = table.columns[field.column]
            expected = canonical_type(field.db_type(connection))
            assert canonical_type(column.type) == expected == column.type, field.name
            assert column.null is field.null, field.name
            assert column.default == ("0" if field.name == "count" else None), field.name
            assert column.identity is field.primary_key, field.name
            assert not column.generated
            if field.primary_key:
                assert ("primary", (field.column,), None) in _keys(table)[1]
            elif field.unique:
                assert table.has_unique([field.column]), field.name
            elif field.db_index:
                assert table.has_index([field.column], unique=False), field.name
            check = field.db_check(connection)
            if check:
                assert ("check", (field.column,), None) in _keys(table)[1], field.name
            if field.remote_field:
                target = field.target_field
                reference = (target.model._meta.db_table, (target.column,))
                [fk] = [fk for fk in table.foreign_keys() if fk.columns == (field.column,)]
                assert fk.references == reference and fk.deferrable and fk.validated
        assert all(i.valid for i in table.indexes)

    item = schema.tables["shelf_item"]
    indexes, constraints = _keys(item)
    assert (("title",), False, True, "btree") in indexes  # the partial index
    [lower] = [i for i in item.indexes if i.name == "shelf_lower_title"]
    assert re.fullmatch(r"\(.*lower.*title.*\)", lower.columns[0], re.IGNORECASE), lower
    assert item.has_index(["day", "moment"]) and item.has_index(["day", "moment"], unique=False)
    assert not item.has_index(["moment", "day"]) and not item.has_index(["day"])
    assert not item.has_index(["day", "moment"], unique=True)
    assert ("unique", ("title", "category_id"), None) in constraints
    assert item.has_unique(["category_id", "title"])
    assert item.has_unique(["small", "big"])  # unique_together
    assert ("check", ("price",), None) in constraints
    assert not item.has_unique(["title"])  # only the partial index is on title alone
    assert schema.tables["shelf_category"].foreign_keys() == ()
    slug = sorted((i.opclasses for i in item.indexes if i.columns == ("slug",)), key=len)
    # PostgreSQL: Django adds a varchar_pattern_ops index for LIKE beside the plain one.
    assert slug == ([(), ("varchar_pattern_ops",)] if scratch.vendor == "postgresql" else [()])


def test_reads_every_table_in_a_fixed_number_of_queries(empty: Scratch) -> None:
    def add(first: int, count: int) -> None:
        _run(
            empty.alias,
            *(
                statement
                for n in range(first, first + count)
                for statement in (
                    f"CREATE TABLE t{n} (id integer PRIMARY KEY, parent integer REFERENCES"
                    f" t{n} (id), code varchar(10) UNIQUE DEFAULT 'x', qty integer CHECK"
                    " (qty > 0))",
                    f"CREATE INDEX t{n}_qty ON t{n} (qty)",
                )
            ),
        )

    add(0, 3)
    few = read_schema(empty.alias)
    add(3, 57)
    many = read_schema(empty.alias)

    assert len(few.tables) == 3 and len(many.tables) == 60
    assert few.queries == many.queries == QUERIES[empty.vendor]
    for table in many.tables.values():  # every query's rows reached every table
        assert list(table.columns) == ["id", "parent", "code", "qty"]
        assert {c.kind for c in table.constraints} == {"primary", "foreign", "unique", "check"}
        assert table.has_index(["qty"]) and table.has_unique(["code"])
        assert table.columns["code"].default == "'x'::character varying" or (
            empty.vendor == "sqlite" and table.columns["code"].default == "'x'"
        )


def test_keys_stay_equal_when_names_change(created: tuple[Any, Scratch]) -> None:
    _, scratch = created
    before = read_schema(scratch.alias).tables["shelf_item"]
    if scratch.vendor == "postgresql":
        _run(
            scratch.alias,
            "ALTER INDEX shelf_day_moment RENAME TO made_by_hand",
            "ALTER TABLE shelf_item RENAME CONSTRAINT shelf_price_ok TO price_checked",
        )
    else:  # SQLite cannot rename an index: the same one, built again under another name
        _run(
            scratch.alias,
            "DROP INDEX shelf_day_moment",
            "CREATE INDEX made_by_hand ON shelf_item (day, moment)",
        )
    after = read_schema(scratch.alias).tables["shelf_item"]

    assert _keys(after) == _keys(before)
    assert {i.name for i in after.indexes} != {i.name for i in before.indexes}
    assert "made_by_hand" in {i.name for i in after.indexes}


def test_reads_a_database_named_by_its_url_as_by_its_alias(created: tuple[Any, Scratch]) -> None:
    _, scratch = created
    url = _pg_url(scratch) if scratch.vendor == "postgresql" else f"sqlite://{scratch.name}"
    assert read_schema(url) == read_schema(scratch.alias)


# -- PostgreSQL's own states ----------------------------------------------------------------


def test_not_valid_constraints_are_read_as_not_validated(pg: Scratch) -> None:
    _run(
        pg.alias,
        "CREATE TABLE parent (id integer PRIMARY KEY)",
        "CREATE TABLE child (id integer PRIMARY KEY, parent_id integer, qty integer)",
        "INSERT INTO child VALUES (1, 99, -1)",
        "ALTER TABLE child ADD CONSTRAINT child_parent FOREIGN KEY (parent_id)"
        " REFERENCES parent (id) NOT VALID",
        "ALTER TABLE child ADD CONSTRAINT child_qty CHECK (qty >= 0) NOT VALID",
    )
    child = read_schema(pg.alias).tables["child"]
    [fk] = child.foreign_keys()
    assert fk.key == ("foreign", ("parent_id",), ("parent", ("id",)))
    assert not fk.validated and not fk.deferrable and "NOT VALID" in fk.definition
    [check] = [c for c in child.constraints if c.kind == "check"]
    assert check.key == ("check", ("qty",), None) and not check.validated
    [primary] = [c for c in child.constraints if c.kind == "primary"]
    assert primary.validated


def test_an_interrupted_concurrent_index_is_invalid_and_makes_nothing_unique(pg: Scratch) -> None:
    _run(pg.alias, "CREATE TABLE token (code integer)", "INSERT INTO token VALUES (1), (1)")
    with pytest.raises(IntegrityError):
        _run(pg.alias, "CREATE UNIQUE INDEX CONCURRENTLY token_code ON token (code)")

    token = read_schema(pg.alias).tables["token"]
    [index] = token.indexes
    assert index.name == "token_code" and index.unique and not index.valid
    assert index.key == (("code",), True, False, "btree")
    assert not token.has_unique(["code"]) and not token.has_index(["code"])


def test_reads_only_tables_the_search_path_reaches(pg: Scratch) -> None:
    _run(
        pg.alias,
        "CREATE TABLE shown (id integer)",
        "CREATE VIEW shown_view AS SELECT * FROM shown",
        "CREATE MATERIALIZED VIEW shown_totals AS SELECT count(*) FROM shown",
        "CREATE TABLE nothing ()",
        "CREATE TABLE parted (id integer, k integer) PARTITION BY RANGE (k)",
        "CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (10)",
        "CREATE SCHEMA hidden",
        "CREATE TABLE hidden.secret (id integer)",
        "CREATE TABLE hidden.shown (x integer, y integer)",
    )
    schema = read_schema(pg.alias)
    assert set(schema.tables) == {"shown", "nothing", "parted", "parted_low"}
    assert list(schema.tables["shown"].columns) == ["id"]
    assert dict(schema.tables["nothing"].columns) == {}

    # First on the path, hidden.shown shadows public.shown: the application reaches that one.
    with psycopg.connect(_pg_url(pg)) as conn, conn.cursor() as cursor:
        cursor.execute("SET search_path TO hidden, public")
        shadowed = introspect(cursor, "postgresql")
    assert set(shadowed.tables) == {"secret", "shown", "nothing", "parted", "parted_low"}
    assert list(shadowed.tables["shown"].columns) == ["x", "y"]


def test_reads_identity_serial_generated_and_parameterised_columns(pg: Scratch) -> None:
    _run(
        pg.alias,
        "CREATE TABLE counters (a integer GENERATED ALWAYS AS IDENTITY, b bigserial,"
        " c integer NOT NULL DEFAULT 7, d integer GENERATED ALWAYS AS (c * 2) STORED,"
        " e timestamp(3) without time zone, f varchar(5)[], g numeric(8, 3), h char(2),"
        " i timestamptz, j int2)",
    )
    columns = read_schema(pg.alias).tables["counters"].columns
    assert columns["a"] == Column("a", "integer", False, None, True)
    assert columns["b"] == Column("b", "bigint", False, None, True)
    assert columns["c"] == Column("c", "integer", False, "7", False)
    assert columns["d"] == Column("d", "integer", True, None, False, generated=True)
    types = {name: column.type for name, column in columns.items()}
    assert types["e"] == "timestamp(3)" and types["f"] == "varchar(5)[]"
    assert types["g"] == "numeric(8,3)" and types["h"] == "char(2)"
    assert types["i"] == "timestamp with time zone" and types["j"] == "smallint"


def test_reads_methods_exclusions_and_keys_to_a_partitioned_table(pg: Scratch) -> None:
    _run(
        pg.alias,
        "CREATE EXTENSION IF NOT EXISTS btree_gist",
        "CREATE TABLE room (id integer, during tsrange, tags text[],"
        " EXCLUDE USING gist (id WITH =, during WITH &&))",
        "CREATE INDEX room_tags ON room USING gin (tags)",
        "CREATE TABLE event (id integer, k integer, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE event_a PARTITION OF event FOR VALUES FROM (0) TO (10)",
        "CREATE TABLE event_b PARTITION OF event FOR VALUES FROM (10) TO (20)",
        "CREATE TABLE ticket (event_id integer, event_k integer,"
        " FOREIGN KEY (event_id, event_k) REFERENCES event (id, k))",
    )
    schema = read_schema(pg.alias)
    room = schema.tables["room"]
    assert room.has_index(["tags"]) and {i.method for i in room.indexes} == {"gin", "gist"}
    [exclusion] = [c for c in room.constraints if c.kind == "exclude"]
    assert exclusion.columns == ("id", "during") and "EXCLUDE USING gist" in exclusion.definition
    # One foreign key, not one more per partition of the table it references.
    [fk] = schema.tables["ticket"].constraints
    assert fk.key == ("foreign", ("event_id", "event_k"), ("event", ("id", "k")))
    assert schema.tables["event_a"].has_unique(["k", "id"])


def test_unreachable_server_is_a_one_line_error() -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        read_schema("postgresql://postgres@127.0.0.1:1/x")
    assert len(str(caught.value).splitlines()) == 1
    assert str(caught.value).startswith("cannot connect to postgresql://postgres@127.0.0.1:1/x")


def test_refuses_a_vendor_it_cannot_read() -> None:
    with pytest.raises(DeployedStateError, match="cannot read the schema of a mysql database"):
        introspect(sqlite3.connect(":memory:").cursor(), "mysql")


# -- SQLite keeps checks, deferrability and expressions only in its CREATE text ------------


def test_sqlite_checks_and_foreign_keys_are_read_from_the_create_text(tmp_path: Any) -> None:
    path = tmp_path / "lite.sqlite3"
    with sqlite3.connect(path) as lite:
        lite.executescript(
            """
            CREATE TABLE parent (id INTEGER PRIMARY KEY);
            CREATE TABLE "odd (name" (
                "a" int CHECK (a > 0),
                b text CONSTRAINT b_short CHECK (b <> ')' AND length(b) < 5),
                length int,
                parent_id integer REFERENCES parent,
                other integer,
                CONSTRAINT pair CHECK ("a" < [length]),
                CONSTRAINT other_fk FOREIGN KEY (other) REFERENCES parent (id)
                    DEFERRABLE INITIALLY DEFERRED
            );
            CREATE TABLE loose (code int PRIMARY KEY, at "timestamp(3)",
                doubled integer GENERATED ALWAYS AS (code * 2) STORED);
            CREATE VIEW parents AS SELECT * FROM parent;
            """
        )
    lite.close()
    schema = read_schema(f"sqlite://{path}")
    assert set(schema.tables) == {"parent", "odd (name", "loose"}

    odd = schema.tables["odd (name"]
    checks = {(c.name, c.columns, c.definition) for c in odd.constraints if c.kind == "check"}
    assert checks == {
        ("", ("a",), "CHECK (a > 0)"),
        ("b_short", ("b",), "CHECK (b <> ')' AND length(b) < 5)"),
        ("pair", ("a", "length"), 'CHECK ("a" < [length])'),
    }
    foreign = {fk.columns: (fk.references, fk.deferrable) for fk in odd.foreign_keys()}
    assert foreign == {
        ("parent_id",): (("parent", ("id",)), False),  # REFERENCES parent: its primary key
        ("other",): (("parent", ("id",)), True),
    }
    # Only a lone INTEGER PRIMARY KEY is the rowid: an int one even admits NULL.
    assert schema.tables["parent"].columns["id"].identity
    loose = schema.tables["loose"].columns
    assert loose["code"] == Column("code", "integer", True, None, False)  # "int": an alias
    assert loose["at"].type == "timestamp(3)" and loose["doubled"].generated


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catalogue", "django"),
    [
        ("character varying(100)", "varchar(100)"),
        ("character varying", "varchar"),
        ("character(32)", "char(32)"),
        ("time without time zone", "time"),
        ("timestamp without time zone", "timestamp"),
        ("timestamp(6) with time zone", "timestamptz(6)"),
        ("timestamp with time zone", "timestamp  with time zone"),
        ("int4", "integer"),
        ("serial", "integer"),
        ("bigserial", "bigint"),
        ("int8", "bigint"),
        ("smallserial", "smallint"),
        ("bool", "boolean"),
        ("float8", "double precision"),
        ("numeric(10,2)", "decimal(10, 2)"),
        ("integer[]", "integer[3]"),
        ("character varying(10)[]", "varchar(10)[]"),
        ("bigint", "bigint GENERATED BY DEFAULT AS IDENTITY"),
        ("BLOB", "blob"),
        ("smallint unsigned", "SMALLINT  UNSIGNED"),
        ("varchar (100)", "varchar(100)"),
        ("", ""),
    ],
)
def test_spells_catalogue_and_django_types_alike(catalogue: str, django: str) -> None:
    assert canonical_type(catalogue) == canonical_type(django)
    assert canonical_type(canonical_type(django)) == canonical_type(django)


def test_unique_ignores_column_order_and_index_does_not() -> None:
    def index(
        columns: tuple[str, ...], unique: bool = False, partial: bool = False, valid: bool = True
    ) -> Index:
        return Index("i", columns, unique, False, partial, "btree", valid)

    def table(*indexes: Index, constraints: tuple[Constraint, ...] = ()) -> Table:
        return Table("t", MappingProxyType({}), indexes, constraints)

    assert table(index(("a", "b"), unique=True)).has_unique(["b", "a"])
    assert not table(index(("a", "b"), unique=True, partial=True)).has_unique(["a", "b"])
    assert not table(index(("a", "b"), unique=True, valid=False)).has_unique(["a", "b"])
    assert not table(index(("a", "b"), unique=True)).has_unique(["a"])
    primary = Constraint("t_pkey", "primary", ("id",), None, "PRIMARY KEY (id)", True, False)
    assert table(constraints=(primary,)).has_unique(["id"])

    composite = table(index(("a", "b")))
    assert composite.has_index(["a", "b"]) and composite.has_index(["a", "b"], unique=False)
    assert not composite.has_index(["b", "a"]) and not composite.has_index(["a"])
    assert not composite.has_index(["a", "b"], unique=True)
    assert not table(index(("a",), partial=True)).has_index(["a"])
    assert Index("x", ("a",), False, False, False, "btree", True).key == index(("a",)).key


def test_a_schema_is_a_frozen_value() -> None:
    schema = Schema("sqlite", MappingProxyType({}), 4)
    with pytest.raises(AttributeError):
        schema.queries = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        schema.tables["t"] = Table("t", MappingProxyType({}))  # type: ignore[index]
