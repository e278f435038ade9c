"""Hold offline SQL collection byte-equal to what Django collects on a live PostgreSQL."""

from __future__ import annotations

import datetime
import decimal
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django
import psycopg
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DATABASES={},
        INSTALLED_APPS=["django.contrib.postgres"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
django.setup()

from django.contrib.postgres.indexes import GinIndex  # noqa: E402
from django.contrib.postgres.operations import (  # noqa: E402
    AddIndexConcurrently,
    CreateExtension,
    RemoveIndexConcurrently,
)
from django.db import connections, migrations, models  # noqa: E402
from django.db.migrations.state import ProjectState  # noqa: E402
from django.db.models import F, Q, Value  # noqa: E402
from django.db.models.functions import Lower, Now  # noqa: E402

from django_rollout.errors import (  # noqa: E402
    ConfigurationError,
    DatabaseUnavailableError,
    RolloutError,
)
from django_rollout.graph.sql import (  # noqa: E402
    CollectedSQL,
    Statement,
    collect_migration_sql,
    newest_known_postgresql,
    offline_connection,
    oldest_supported_postgresql,
)

LIVE_ALIAS = "rollout_sql_live"
PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

Ops = list[Any]


# --- fixtures: one scratch database for the module ---------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[Any]:
    """Register a live connection to a fresh scratch database; drop it afterwards."""
    name = f"rollout_sql_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    connections.settings[LIVE_ALIAS] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": PG["user"],
        "PASSWORD": "",
        "HOST": PG["host"],
        "PORT": str(PG["port"]),
        "OPTIONS": {},
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {},
    }
    try:
        yield connections[LIVE_ALIAS]
    finally:
        connections[LIVE_ALIAS].close()
        del connections[LIVE_ALIAS]
        del connections.settings[LIVE_ALIAS]
        with psycopg.connect(**PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def live_version(connection: Any) -> tuple[int, ...]:
    return tuple(connection.get_database_version())


def migration(
    app_label: str, operations: Ops, name: str = "0002_target", atomic: bool = True
) -> Any:
    """Return a Migration instance holding ``operations``."""
    instance = migrations.Migration(name, app_label)
    instance.operations = operations
    instance.atomic = atomic
    return instance


def apply_live(connection: Any, app_label: str, prior: list[Ops]) -> ProjectState:
    """Apply ``prior`` migrations for real on the live database; return the state after."""
    state = ProjectState()
    for number, operations in enumerate(prior):
        prior_migration = migration(app_label, operations, f"{number:04d}_prior")
        with connection.schema_editor(atomic=True) as editor:
            state = prior_migration.apply(state, editor)
    return state


def sqlmigrate(
    connection: Any, target: Any, state: ProjectState
) -> list[tuple[str, int | None, bool]]:
    """Collect as MigrationLoader.collect_sql does; tag statements by the comment headers."""
    editor = connection.schema_editor(collect_sql=True, atomic=target.atomic)
    with editor:
        target.apply(state.clone(), editor, collect_sql=True)
        emitted = len(editor.collected_sql)
    out: list[tuple[str, int | None, bool]] = []
    index = -1
    lines = editor.collected_sql
    position = 0
    while position < emitted:
        line = lines[position]
        if line == "--" and position + 2 < len(lines) and lines[position + 2] == "--":
            index += 1
            position += 3
            continue
        if not line.startswith("--"):
            out.append((line, index, False))
        position += 1
    out.extend((line, None, True) for line in lines[emitted:])
    return out


def as_tuples(collected: CollectedSQL) -> list[tuple[str, int | None, bool]]:
    assert collected.error is None, collected.error
    return [(s.sql, s.operation_index, s.deferred) for s in collected.statements]


# --- scenarios -----------------------------------------------------------------------------


def base_models(p: str) -> Ops:
    """Create Author and Book with the column kinds later scenarios alter."""
    return [
        migrations.CreateModel(
            "Author",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=100)),
                ("nick", models.CharField(max_length=30, unique=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            "Book",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("title", models.CharField(max_length=200)),
                ("author", models.ForeignKey("Author", models.CASCADE)),
                (
                    "editor",
                    models.ForeignKey(
                        "Author", models.SET_NULL, null=True, db_constraint=False, related_name="+"
                    ),
                ),
                ("isbn", models.CharField(max_length=20, unique=True)),
                ("pages", models.IntegerField(null=True)),
                ("stock", models.PositiveIntegerField(default=0)),
                ("slug", models.SlugField()),
                ("code", models.CharField(max_length=10, db_index=True)),
                ("body", models.TextField(blank=True)),
            ],
            options={
                "unique_together": {("title", "author")},
                "indexes": [models.Index(fields=["pages"], name=f"{p}_pages_ix")],
                "constraints": [
                    models.UniqueConstraint(fields=["slug"], name=f"{p}_slug_uq"),
                    models.CheckConstraint(condition=Q(pages__gte=0), name=f"{p}_pages_ck"),
                ],
            },
        ),
    ]


def field(model: str, name: str, fld: Any) -> Any:
    return migrations.AlterField(model, name, fld)


def add(name: str, fld: Any, model: str = "book") -> Any:
    return migrations.AddField(model, name, fld)


SCENARIOS: dict[str, Callable[[str], Ops]] = {
    "create_model_fk_m2m_indexes": lambda p: [
        migrations.CreateModel(
            "Tag",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("name", models.CharField(max_length=50, unique=True)),
            ],
        ),
        migrations.CreateModel(
            "Shelf",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("label", models.CharField(max_length=40, db_index=True)),
                ("owner", models.ForeignKey("Author", models.PROTECT)),
                ("tags", models.ManyToManyField("Tag")),
                ("note", models.TextField(db_default="n/a")),
            ],
            options={
                "unique_together": {("label", "owner")},
                "indexes": [models.Index(fields=["-label"], name="shelf_label_desc")],
            },
        ),
    ],
    "add_nullable": lambda p: [add("subtitle", models.CharField(max_length=50, null=True))],
    "add_not_null_default": lambda p: [add("rating", models.IntegerField(default=0))],
    "add_default_quoted_string": lambda p: [
        add("motto", models.CharField(max_length=50, default="it's a \\ 100% é"))
    ],
    "add_db_default": lambda p: [
        add("level", models.IntegerField(db_default=Value(1))),
        add("created", models.DateTimeField(db_default=Now())),
        add("label", models.CharField(max_length=9, db_default="o'k")),
    ],
    "add_unique": lambda p: [add("ean", models.CharField(max_length=13, unique=True, null=True))],
    "add_db_index": lambda p: [
        add("shelf", models.CharField(max_length=8, null=True, db_index=True))
    ],
    "add_fk": lambda p: [add("coauthor", models.ForeignKey("Author", models.SET_NULL, null=True))],
    "add_o2o": lambda p: [
        add("bio_of", models.OneToOneField("Author", models.SET_NULL, null=True))
    ],
    "add_m2m": lambda p: [add("readers", models.ManyToManyField("Author", related_name="read"))],
    "add_typed_defaults": lambda p: [
        add("blob", models.BinaryField(default=b"\x00ab\\")),
        add("meta", models.JSONField(default=dict)),
        add("extra", models.JSONField(default={"a": "b'c"})),
        add("day", models.DateField(default=datetime.date(2020, 1, 2))),
        add(
            "at",
            models.DateTimeField(default=datetime.datetime(2020, 1, 2, 3, 4, tzinfo=datetime.UTC)),
        ),
        add(
            "price",
            models.DecimalField(max_digits=6, decimal_places=2, default=decimal.Decimal("1.50")),
        ),
        add("uid", models.UUIDField(default=uuid.UUID("12345678123456781234567812345678"))),
        add("span", models.DurationField(default=datetime.timedelta(days=1, seconds=5))),
        add("flag", models.BooleanField(default=True)),
        add("ratio", models.FloatField(default=0.5)),
    ],
    "add_generated": lambda p: [
        add(
            "double",
            models.GeneratedField(
                expression=F("stock") * 2, output_field=models.BigIntegerField(), db_persist=True
            ),
        ),
    ],
    "add_collated_indexed": lambda p: [
        add("sortkey", models.CharField(max_length=20, db_collation="C", db_index=True, null=True))
    ],
    "remove_fields": lambda p: [
        migrations.RemoveField("book", "code"),
        migrations.RemoveField("book", "editor"),
        migrations.RemoveField("book", "isbn"),
    ],
    "remove_fk": lambda p: [
        migrations.AlterUniqueTogether("book", set()),
        migrations.RemoveField("book", "author"),
    ],
    "alter_type": lambda p: [field("book", "pages", models.BigIntegerField(null=True))],
    "alter_not_null_with_default": lambda p: [
        field("book", "pages", models.IntegerField(default=0))
    ],
    "alter_not_null_without_default": lambda p: [field("book", "pages", models.IntegerField())],
    "alter_null": lambda p: [field("book", "body", models.TextField(blank=True, null=True))],
    "alter_max_length": lambda p: [field("book", "title", models.CharField(max_length=300))],
    "alter_add_unique": lambda p: [
        field("book", "title", models.CharField(max_length=200, unique=True))
    ],
    "alter_remove_unique": lambda p: [field("book", "isbn", models.CharField(max_length=20))],
    "alter_unique_to_index": lambda p: [
        field("book", "isbn", models.CharField(max_length=20, db_index=True))
    ],
    "alter_add_db_index": lambda p: [
        field("book", "pages", models.IntegerField(null=True, db_index=True))
    ],
    "alter_remove_db_index": lambda p: [field("book", "code", models.CharField(max_length=10))],
    "alter_indexed_varchar_to_text": lambda p: [
        field("book", "code", models.TextField(db_index=True))
    ],
    "alter_add_fk_constraint": lambda p: [
        field(
            "book",
            "editor",
            models.ForeignKey("Author", models.SET_NULL, null=True, related_name="+"),
        )
    ],
    "alter_drop_fk_constraint": lambda p: [
        field("book", "author", models.ForeignKey("Author", models.CASCADE, db_constraint=False))
    ],
    "alter_fk_to_other_model": lambda p: [
        migrations.CreateModel("Press", [("id", models.BigAutoField(primary_key=True))]),
        field(
            "book",
            "editor",
            models.ForeignKey("Press", models.SET_NULL, null=True, related_name="+"),
        ),
    ],
    "alter_remove_check": lambda p: [field("book", "stock", models.IntegerField(default=0))],
    "alter_auto_pk_widening": lambda p: [
        field("author", "id", models.BigAutoField(primary_key=True))
    ],
    "alter_db_default": lambda p: [
        field("book", "pages", models.IntegerField(null=True, db_default=7))
    ],
    "rename_field": lambda p: [migrations.RenameField("book", "title", "headline")],
    "rename_indexed_field": lambda p: [migrations.RenameField("book", "code", "ref")],
    "rename_model": lambda p: [migrations.RenameModel("Author", "Writer")],
    "alter_model_table": lambda p: [migrations.AlterModelTable("book", "library_book")],
    "delete_model": lambda p: [migrations.DeleteModel("Book")],
    "add_index_plain": lambda p: [
        migrations.AddIndex("book", models.Index(fields=["title", "-pages"], name="book_tp_ix"))
    ],
    "add_index_condition": lambda p: [
        migrations.AddIndex(
            "book",
            models.Index(
                fields=["title"],
                condition=Q(pages__gt=100) & Q(body__startswith="a%'"),
                name="book_big_ix",
            ),
        )
    ],
    "add_index_expressions": lambda p: [
        migrations.AddIndex(
            "book", models.Index(Lower("title"), F("pages").desc(), name="book_lower_ix")
        )
    ],
    "add_index_opclasses_include": lambda p: [
        migrations.AddIndex(
            "book",
            models.Index(
                fields=["title"],
                opclasses=["varchar_pattern_ops"],
                include=["pages"],
                name="book_ops_ix",
            ),
        )
    ],
    "add_gin_index": lambda p: [
        migrations.AddIndex(
            "book", GinIndex(fields=["body"], opclasses=["gin_trgm_ops"], name="book_gin")
        )
    ],
    "remove_index": lambda p: [migrations.RemoveIndex("book", f"{p}_pages_ix")],
    "rename_index": lambda p: [
        migrations.RenameIndex("book", new_name="book_pages_renamed", old_name=f"{p}_pages_ix")
    ],
    "add_constraints": lambda p: [
        migrations.AddConstraint(
            "book", models.UniqueConstraint(fields=["title", "pages"], name="b_tp_uq")
        ),
        migrations.AddConstraint(
            "book",
            models.UniqueConstraint(
                fields=["title"], condition=Q(pages__isnull=False), name="b_t_cond_uq"
            ),
        ),
        migrations.AddConstraint(
            "book", models.UniqueConstraint(Lower("title"), name="b_lower_uq")
        ),
        migrations.AddConstraint(
            "book",
            models.CheckConstraint(
                condition=Q(stock__lt=10**6) | Q(title__contains="%'"), name="b_stock_ck"
            ),
        ),
        migrations.AddConstraint(
            "book",
            models.UniqueConstraint(
                fields=["body"], name="b_body_uq", deferrable=models.Deferrable.DEFERRED
            ),
        ),
    ],
    "add_unique_nulls_not_distinct": lambda p: [
        migrations.AddConstraint(
            "book",
            models.UniqueConstraint(fields=["pages"], name="b_pages_nnd", nulls_distinct=False),
        ),
    ],
    "remove_constraints": lambda p: [
        migrations.RemoveConstraint("book", f"{p}_slug_uq"),
        migrations.RemoveConstraint("book", f"{p}_pages_ck"),
    ],
    "alter_unique_together": lambda p: [
        migrations.AlterUniqueTogether("book", {("title", "pages")})
    ],
    "alter_index_together": lambda p: [migrations.AlterIndexTogether("book", {("title", "slug")})],
    "run_sql": lambda p: [
        migrations.RunSQL("UPDATE a_book SET pages = 1 WHERE title LIKE '10%'; SELECT 1;"),
        migrations.RunSQL([("UPDATE a_book SET title = %s WHERE id = %s", ["it's", 3])]),
        migrations.RunSQL(["SELECT 2", "SELECT 3;"], reverse_sql="SELECT 4"),
    ],
    "run_python_is_skipped": lambda p: [
        migrations.RunPython(migrations.RunPython.noop),
        add("later", models.IntegerField(null=True)),
    ],
    "postgres_concurrent_indexes": lambda p: [
        AddIndexConcurrently("book", models.Index(fields=["body"], name="book_body_cc")),
        RemoveIndexConcurrently("book", f"{p}_pages_ix"),
    ],
    "create_extension": lambda p: [CreateExtension("pg_trgm")],
    "separate_database_and_state": lambda p: [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL("SELECT 5")],
            state_operations=[add("ghost", models.IntegerField(null=True))],
        )
    ],
}

# --- tests: byte-equal to sqlmigrate on the live server -----------------------------------


def app_label_for(name: str) -> str:
    return "a" if name == "run_sql" else f"s_{name}"[:40]


# RunSQL's text does not depend on the pin: it runs once, at the live pin.
PINNED = [
    (name, pin)
    for name in sorted(SCENARIOS)
    for pin in ("live", "default")
    if not (name == "run_sql" and pin == "default")
]


@pytest.mark.parametrize(("name", "pin"), PINNED)
def test_offline_sql_matches_sqlmigrate(live: Any, name: str, pin: str) -> None:
    app_label = app_label_for(name)
    state = _PREPARED.get(app_label)
    if state is None:
        state = apply_live(live, app_label, [base_models(app_label)])
        _PREPARED[app_label] = state
    target = migration(app_label, SCENARIOS[name](app_label), atomic="concurrent" not in name)
    expected = sqlmigrate(live, target, state)
    version = live_version(live) if pin == "live" else None
    snapshot = state.clone()
    offline = collect_migration_sql(target, state, server_version=version)
    assert as_tuples(offline) == expected
    assert state == snapshot


_PREPARED: dict[str, ProjectState] = {}


# --- tests: version pins, the real run, failures, isolation -------------------------------


def prepared(live: Any, app_label: str, prior: list[Ops] | None = None) -> ProjectState:
    """Apply the prior migrations of ``app_label`` once per module."""
    if app_label not in _PREPARED:
        _PREPARED[app_label] = apply_live(live, app_label, prior or [base_models(app_label)])
    return _PREPARED[app_label]


def test_pin_below_15_leaves_out_nulls_not_distinct_constraint(live: Any) -> None:
    app_label = app_label_for("add_unique_nulls_not_distinct")
    state = prepared(live, app_label)
    target = migration(app_label, SCENARIOS["add_unique_nulls_not_distinct"](app_label))
    on_15 = collect_migration_sql(target, state, server_version=(15,))
    assert [s.sql for s in on_15.statements] == [
        f'ALTER TABLE "{app_label}_book" ADD CONSTRAINT "b_pages_nnd" UNIQUE NULLS NOT DISTINCT '
        '("pages");'
    ]
    if oldest_supported_postgresql() <= (14,):
        # Django < 6.0 runs on PostgreSQL 14, which has no NULLS NOT DISTINCT.
        on_14 = collect_migration_sql(target, state, server_version=(14, 9))
        assert on_14 == CollectedSQL(())
    else:
        # Django 6.0+ refuses PostgreSQL 14, so its SQL for 14 is never run.
        with pytest.raises(ConfigurationError, match=r"14\.9.*PostgreSQL 15 or later"):
            collect_migration_sql(target, state, server_version=(14, 9))


def known_feature_majors() -> list[int]:
    """The NN of every ``is_postgresql_NN`` flag the installed Django has."""
    from django.db.backends.postgresql.features import DatabaseFeatures

    return sorted(
        int(name.rsplit("_", 1)[1])
        for name in vars(DatabaseFeatures)
        if name.startswith("is_postgresql_")
    )


def test_default_pin_is_newest_postgresql_django_knows() -> None:
    connection = offline_connection()
    assert connection.pg_version == newest_known_postgresql()[0] * 10000
    assert newest_known_postgresql() >= (17,)
    assert newest_known_postgresql() == (max(known_feature_majors()),)


def test_pin_drives_each_feature_flag_django_has() -> None:
    majors = known_feature_majors()
    assert majors, "Django's PostgreSQL backend has no is_postgresql_NN flag"
    floor = oldest_supported_postgresql()
    for major in majors:
        flag = f"is_postgresql_{major}"
        assert getattr(offline_connection(server_version=(major, 4)).features, flag)
        assert getattr(offline_connection(server_version=(major + 1,)).features, flag)
        if (major - 1,) >= floor:
            assert not getattr(offline_connection(server_version=(major - 1, 9)).features, flag)


def test_pin_flags_differ_by_django_version() -> None:
    from django.db.backends.postgresql.features import DatabaseFeatures

    if django.VERSION < (6, 0):
        assert oldest_supported_postgresql() == (14,)
        assert offline_connection(server_version=(15, 4)).features.is_postgresql_15
        assert not offline_connection(server_version=(14,)).features.is_postgresql_15
        assert not offline_connection(
            server_version=(14,)
        ).features.supports_nulls_distinct_unique_constraints
    else:
        # PostgreSQL 15 is the floor: its flag left with PostgreSQL 14.
        assert oldest_supported_postgresql() == (15,)
        assert not hasattr(DatabaseFeatures, "is_postgresql_15")
        assert offline_connection(
            server_version=(15,)
        ).features.supports_nulls_distinct_unique_constraints
    assert offline_connection(server_version=(16, 2)).features.is_postgresql_16


def test_pin_older_than_django_supports_is_refused() -> None:
    floor = oldest_supported_postgresql()
    assert offline_connection(server_version=floor).pg_version == floor[0] * 10000
    below = (floor[0] - 1, 9)
    with pytest.raises(ConfigurationError, match=rf"server_version {below[0]}\.9: Django "):
        offline_connection(server_version=below)


def executed_ddl(connection: Any, target: Any, state: ProjectState) -> list[str]:
    """Apply ``target`` for real and return the DDL the schema editor executed."""
    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if params is None and not sql.lstrip().upper().startswith("SELECT"):
            seen.append(sql if sql.rstrip().endswith(";") else sql + ";")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record), connection.schema_editor(atomic=True) as editor:
        target.apply(state.clone(), editor)
    return seen


def test_auto_to_plain_pk_follows_the_real_run_not_sqlmigrate(live: Any) -> None:
    """DROP IDENTITY drops the identity sequence, so the real run has no DROP SEQUENCE."""
    app_label = "s_drop_identity"
    state = prepared(live, app_label)
    target = migration(app_label, [field("author", "id", models.IntegerField(primary_key=True))])
    offline = [s.sql for s in collect_migration_sql(target, state).statements]
    collected = [sql for sql, _, _ in sqlmigrate(live, target, state)]
    assert f'DROP SEQUENCE IF EXISTS "{app_label}_author_id_seq" CASCADE;' in collected
    assert (
        offline
        == [sql for sql in collected if not sql.startswith("DROP SEQUENCE")]
        == executed_ddl(live, target, state)
    )


def test_introspection_answers_from_the_state_before_each_operation(live: Any) -> None:
    """A field added unique and made non-unique in one migration: the real run drops `_key`."""
    app_label = "s_same_migration"
    state = prepared(live, app_label)
    target = migration(
        app_label,
        [
            add("ean", models.CharField(max_length=13, unique=True, null=True)),
            field("book", "ean", models.CharField(max_length=13, null=True)),
        ],
    )
    offline = [s.sql for s in collect_migration_sql(target, state).statements]
    assert f'ALTER TABLE "{app_label}_book" DROP CONSTRAINT "{app_label}_book_ean_key";' in offline
    assert offline == executed_ddl(live, target, state)


def test_long_identifiers_are_truncated_as_postgresql_names_them(live: Any) -> None:
    app_label = "s_long_names"
    long_model = "Publication" + "x" * 30
    long_column = "reference_code_" + "y" * 40
    prior = [
        [
            migrations.CreateModel(
                long_model,
                [
                    ("id", models.BigAutoField(primary_key=True)),
                    (long_column, models.CharField(max_length=20, unique=True)),
                ],
            )
        ]
    ]
    state = prepared(live, app_label, prior)
    target = migration(
        app_label,
        [
            field(long_model.lower(), long_column, models.CharField(max_length=20)),
            field(long_model.lower(), "id", models.BigAutoField(primary_key=True)),
            field(long_model.lower(), "id", models.AutoField(primary_key=True)),
        ],
    )
    offline = collect_migration_sql(target, state, server_version=live_version(live))
    assert as_tuples(offline) == sqlmigrate(live, target, state)
    assert any("_key" in s.sql and "DROP CONSTRAINT" in s.sql for s in offline.statements)


def test_reports_unknowable_collation_and_keeps_statements_before_it() -> None:
    state = ProjectState()
    for operation in base_models("s_collation"):
        operation.state_forwards("s_collation", state)
    target = migration(
        "s_collation",
        [
            add("plain", models.IntegerField(null=True)),
            add("ci", models.CharField(max_length=9, db_collation="case_insensitive", unique=True)),
        ],
    )
    collected = collect_migration_sql(target, state)
    assert [s.operation_index for s in collected.statements] == [0]
    assert collected.error is not None
    assert "operation 1" in collected.error and "case_insensitive" in collected.error
    assert "\n" not in collected.error


def test_never_raises_for_a_broken_migration() -> None:
    target = migration("s_broken", [migrations.RemoveField("ghost", "field")])
    collected = collect_migration_sql(target, ProjectState())
    assert collected.statements == ()
    assert collected.error is not None and "operation 0" in collected.error


_SOCKETS: list[Any] = []
_WATCHING: list[bool] = []


def _audit(event: str, args: Any) -> None:
    if _WATCHING and event in {"socket.connect", "socket.getaddrinfo"}:
        _SOCKETS.append((event, args))


sys.addaudithook(_audit)


def test_offline_connection_never_opens_a_socket() -> None:
    state = ProjectState()
    for operation in base_models("s_socket"):
        operation.state_forwards("s_socket", state)
    target = migration(
        "s_socket",
        [
            add("motto", models.CharField(max_length=9, default="x", unique=True)),
            field("book", "isbn", models.CharField(max_length=20)),
            migrations.RenameModel("Author", "Writer"),
        ],
    )
    connection = offline_connection()
    _WATCHING.append(True)
    try:
        collected = collect_migration_sql(target, state, connection=connection)
    finally:
        _WATCHING.clear()
    assert collected.error is None
    assert len(collected.statements) > 5
    assert _SOCKETS == []
    assert connection.connection is None
    with pytest.raises(DatabaseUnavailableError), connection.cursor():
        pass
    assert issubclass(DatabaseUnavailableError, RolloutError)


def test_statements_are_tagged_with_operation_and_deferral() -> None:
    state = ProjectState()
    for operation in base_models("s_tags"):
        operation.state_forwards("s_tags", state)
    target = migration(
        "s_tags",
        [
            migrations.RunPython(migrations.RunPython.noop),
            migrations.CreateModel(
                "Note",
                [
                    ("id", models.BigAutoField(primary_key=True)),
                    ("book", models.ForeignKey("Book", models.CASCADE)),
                ],
            ),
        ],
    )
    collected = collect_migration_sql(target, state)
    assert collected.error is None
    assert all(isinstance(s, Statement) for s in collected.statements)
    tags = [(s.operation_index, s.deferred) for s in collected.statements]
    assert tags == [(1, False), (None, True), (None, True)]
    assert "FOREIGN KEY" in collected.statements[1].sql
    assert collected.statements[2].sql.startswith('CREATE INDEX "s_tags_note_book_id_')


# --- SQLite: an in-memory replica of the before-state answers introspection ---------------

SQLITE_ALIAS = "rollout_sql_sqlite"
POSTGRES_ONLY = {
    "add_collated_indexed",
    "add_gin_index",
    "create_extension",
    "postgres_concurrent_indexes",
    "run_sql",
    # Django's SQLite editor cannot format a default holding "%" under collect_sql.
    "add_default_quoted_string",
}


@pytest.fixture(scope="module")
def live_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Register a file SQLite database as the live side of the comparison."""
    path = tmp_path_factory.mktemp("sqlite") / "live.sqlite3"
    connections.settings[SQLITE_ALIAS] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "USER": "",
        "HOST": "",
        "PORT": "",
        "PASSWORD": "",
        "OPTIONS": {},
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {},
    }
    try:
        yield connections[SQLITE_ALIAS]
    finally:
        connections[SQLITE_ALIAS].close()
        del connections[SQLITE_ALIAS]
        del connections.settings[SQLITE_ALIAS]


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - POSTGRES_ONLY))
def test_offline_sqlite_matches_sqlmigrate(live_sqlite: Any, name: str) -> None:
    app_label = f"q_{name}"[:40]
    state = apply_live(live_sqlite, app_label, [base_models(app_label)])
    target = migration(app_label, SCENARIOS[name](app_label))
    expected = sqlmigrate(live_sqlite, target, state)
    assert as_tuples(collect_migration_sql(target, state, vendor="sqlite")) == expected
