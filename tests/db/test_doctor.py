"""``doctor``: what it must stay silent on, comparison by definition, and its faces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests._project import PG, Project, migration, pg_url, scratch_database

# Every kind of object the expected schema models, and the ways a history reaches it:
# a state-only removal that leaves the column, a RunSQL SET NOT NULL, an M2M table,
# a partial index, checks, unique_together, a renamed field and a renamed model.
WIDE = migration(
    """
    migrations.CreateModel(
        "Tag",
        [("id", models.BigAutoField(primary_key=True)), ("label", models.SlugField())],
    ),
    migrations.CreateModel(
        "Item",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100, db_index=True)),
            ("code", models.CharField(max_length=20, unique=True)),
            ("body", models.TextField(blank=True)),
            ("qty", models.PositiveIntegerField(default=0)),
            ("small", models.PositiveSmallIntegerField(null=True)),
            ("price", models.DecimalField(max_digits=10, decimal_places=2)),
            ("ratio", models.FloatField(null=True)),
            ("flag", models.BooleanField(default=False)),
            ("day", models.DateField(null=True)),
            ("at", models.DateTimeField(auto_now_add=True)),
            ("clock", models.TimeField(null=True)),
            ("span", models.DurationField(null=True)),
            ("uid", models.UUIDField(null=True)),
            ("data", models.JSONField(default=dict)),
            ("ip", models.GenericIPAddressField(null=True)),
            ("blob", models.BinaryField(null=True)),
            ("tag", models.ForeignKey("Tag", models.SET_NULL, null=True)),
            ("tags", models.ManyToManyField("Tag", related_name="items")),
        ],
        options={
            "unique_together": {("name", "price")},
            "indexes": [
                models.Index(fields=["day", "-at"], name="item_day_at"),
                models.Index(fields=["qty"], name="item_qty_open", condition=models.Q(flag=False)),
            ],
            "constraints": [
                models.CheckConstraint(condition=models.Q(price__gte=0), name="item_price_pos"),
                models.UniqueConstraint(
                    fields=["uid"], condition=models.Q(flag=True), name="item_uid_flagged"
                ),
            ],
        },
    ),
    """
)
LATER = migration(
    """
    migrations.AddField("item", "note", models.CharField(max_length=30, null=True)),
    migrations.RunSQL(
        'ALTER TABLE "inv_item" ALTER COLUMN "note" SET NOT NULL',
        'ALTER TABLE "inv_item" ALTER COLUMN "note" DROP NOT NULL',
        state_operations=[
            migrations.AlterField("item", "note", models.CharField(max_length=30, default="")),
        ],
    ),
    migrations.RenameField("item", "body", "text"),
    migrations.AlterField("item", "name", models.CharField(max_length=150, db_index=True)),
    migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField("item", "ratio")]),
    migrations.RenameModel("Tag", "Label"),
    migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop),
    """,
    '[("inv", "0001_initial")]',
)


@pytest.fixture
def db() -> Iterator[dict[str, Any]]:
    with scratch_database() as database:
        yield database


def _project(tmp_path: Path, database: dict[str, Any]) -> Project:
    project = Project(tmp_path)
    project.app("inv", {"0001_initial": WIDE, "0002_later": LATER})
    project.configure(["inv"], database)
    assert project.manage("migrate", "-v0").status == 0
    return project


def _doctor(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = project.run("--settings", project.settings, "doctor", "--format", "json", *args)
    assert result.status in (0, 1), result.stderr
    return result.status, result.json()


def _sql(database: dict[str, Any], *statements: str) -> None:
    with psycopg.connect(dbname=database["NAME"], autocommit=True, **PG) as conn:
        for statement in statements:
            conn.execute(statement)


def test_reports_nothing_on_a_database_that_migrate_built(
    tmp_path: Path, db: dict[str, Any]
) -> None:
    project = _project(tmp_path, db)
    status, doc = _doctor(project)
    assert doc["findings"] == [], doc["findings"]
    assert doc["repair"] == []
    assert status == 0
    assert doc["command"] == "doctor"
    assert doc["schema_version"] == 1
    assert doc["migrations"]["recorded"] >= 2


def test_compares_indexes_and_constraints_by_definition_not_by_name(
    tmp_path: Path, db: dict[str, Any]
) -> None:
    project = _project(tmp_path, db)
    _sql(
        db,
        'ALTER INDEX "item_day_at" RENAME TO "restored_from_elsewhere"',
        'ALTER TABLE "inv_item" RENAME CONSTRAINT "item_price_pos" TO "chk_1"',
        'ALTER INDEX "item_qty_open" RENAME TO "idx_2"',
    )
    _, doc = _doctor(project)
    assert doc["findings"] == []


def test_keeps_expecting_a_column_that_a_state_only_removal_left(
    tmp_path: Path, db: dict[str, Any]
) -> None:
    project = _project(tmp_path, db)
    _sql(db, 'ALTER TABLE "inv_item" DROP COLUMN "ratio"')
    status, doc = _doctor(project)
    assert status == 1
    [finding] = doc["findings"]
    assert (finding["rule"], finding["migration"]) == ("H501", "0001_initial")
    assert [e["object"] for e in finding["evidence"]] == [
        "column `inv_item.ratio` double precision NULL"
    ]
    assert finding["evidence"][0]["observed"] == "is missing"


def test_sees_a_raw_sql_not_null_undone_by_hand(tmp_path: Path, db: dict[str, Any]) -> None:
    project = _project(tmp_path, db)
    _sql(db, 'ALTER TABLE "inv_item" ALTER COLUMN "note" DROP NOT NULL')
    _, doc = _doctor(project)
    [finding] = doc["findings"]
    assert (finding["rule"], finding["migration"]) == ("H501", "0002_later")
    assert finding["evidence"][0]["operation_index"] == 1
    assert "NULL" in finding["evidence"][0]["observed"]


def test_names_an_index_a_recorded_migration_dropped_that_is_still_there(
    tmp_path: Path, db: dict[str, Any]
) -> None:
    project = Project(tmp_path)
    project.app(
        "inv",
        {
            "0001_initial": WIDE,
            "0002_later": LATER,
            "0003_drop_index": migration(
                'migrations.RemoveIndex("item", "item_day_at"),', '[("inv", "0002_later")]'
            ),
        },
    )
    project.configure(["inv"], db)
    assert project.manage("migrate", "-v0").status == 0
    _sql(db, 'CREATE INDEX "other_name" ON "inv_item" ("day", "at" DESC)')
    _, doc = _doctor(project)
    [finding] = doc["findings"]
    assert (finding["rule"], finding["migration"]) == ("H501", "0003_drop_index")
    assert finding["evidence"][0]["expected"] == "absent"


def test_apply_refuses_a_url_and_a_missing_terminal(tmp_path: Path, db: dict[str, Any]) -> None:
    project = _project(tmp_path, db)
    _sql(db, "DELETE FROM django_migrations WHERE app = 'inv' AND name = '0002_later'")
    result = project.run(
        "--settings", project.settings, "doctor", "--database", pg_url(db), "--apply"
    )
    assert result.status == 2
    assert result.stderr.count("\n") == 1 and "alias" in result.stderr
    result = project.run("--settings", project.settings, "doctor", "--apply")
    assert result.status == 2 and "--no-input" in result.stderr
    # Nothing was changed: the record is still missing.
    _, doc = _doctor(project)
    assert [f["rule"] for f in doc["findings"]] == ["H502"]


def test_repairs_on_a_url_are_shown_not_applied(tmp_path: Path, db: dict[str, Any]) -> None:
    project = _project(tmp_path, db)
    _sql(db, "DELETE FROM django_migrations WHERE app = 'inv' AND name = '0002_later'")
    status, doc = _doctor(project, "--database", pg_url(db))
    assert status == 0  # H502 is a warning
    assert doc["s0_source"] == f"database:{pg_url(db)}"
    assert doc["repair"] == [
        {
            "action": "record",
            "app_label": "inv",
            "migration": "0002_later",
            "why": doc["repair"][0]["why"],
            "command": "INSERT INTO django_migrations (app, name, applied)"
            " VALUES ('inv', '0002_later', CURRENT_TIMESTAMP);",
        }
    ]
    assert "RunPython" in doc["repair"][0]["why"]  # its data step cannot be observed


def test_reads_the_schema_in_a_fixed_number_of_queries(tmp_path: Path, db: dict[str, Any]) -> None:
    project = _project(tmp_path, db)
    _, doc = _doctor(project)
    small = doc["schema"]["queries"]
    _sql(db, *(f'CREATE TABLE "extra_{n}" (id int PRIMARY KEY, v text UNIQUE)' for n in range(40)))
    _, doc = _doctor(project)
    assert doc["schema"]["queries"] == small
    assert doc["findings"] == []  # tables no migration made are not the history's business


def test_system_check_warns_only_when_asked_for_a_database(
    tmp_path: Path, db: dict[str, Any]
) -> None:
    project = _project(tmp_path, db)
    _sql(
        db, "INSERT INTO django_migrations (app, name, applied) VALUES ('inv', '0009_newer', now())"
    )
    plain = project.manage("check")
    assert plain.status == 0 and "W503" not in plain.stderr + plain.stdout
    asked = project.manage("check", "--database", "default")
    assert "django_rollout.W503" in asked.stderr + asked.stdout
    assert "inv.0009_newer" in asked.stderr + asked.stdout
    age = project.run("--settings", project.settings, "doctor", "--code-age")
    assert age.status == 3


def test_system_check_runs_no_query_at_start_up(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.app("inv", {"0001_initial": WIDE})
    unreachable = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "x",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": 1,
    }
    project.configure(["inv"], unreachable)
    result = project.manage("check")
    assert result.status == 0, result.stderr


def test_doctor_on_sqlite_finds_an_unrecorded_migration(tmp_path: Path) -> None:
    project = Project(tmp_path)
    add_note = migration(
        'migrations.AddField("item", "note", models.CharField(max_length=30, null=True)),',
        '[("inv", "0001_initial")]',
    )
    project.app("inv", {"0001_initial": WIDE, "0002_later": add_note})
    project.configure(["inv"])
    assert project.manage("migrate", "-v0").status == 0
    _, doc = _doctor(project)
    assert doc["findings"] == [], doc["findings"]
    import sqlite3

    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'inv' AND name = '0002_later'")
    _, doc = _doctor(project)
    assert [(f["rule"], f["migration"]) for f in doc["findings"]] == [("H502", "0002_later")]
    assert json.dumps(doc)  # the envelope is plain JSON
