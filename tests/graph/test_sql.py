"""Hold offline SQL collection byte-equal to what Django collects on a live PostgreSQL."""

from __future__ import annotations

import datetime
import decimal
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

from django_rollout.graph.sql import (  # noqa: E402
    CollectedSQL,
    collect_migration_sql,
)

LIVE_ALIAS = "rollout_sql_live"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

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


@pytest.mark.parametrize("pin", ["live", "default"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_offline_sql_matches_sqlmigrate(live: Any, name: str, pin: str) -> None:
    app_label = app_label_for(name)
    if name == "run_sql" and pin == "default":
        pytest.skip("same database objects as the live pin; covered there")
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
