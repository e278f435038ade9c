"""`rehearse --from-database`: the rehearsal runs on a copy of a real database.

S0 is what the copied database has applied, its rows are the real ones (no synthetic top-up
unless ``--rows`` asks for it), and the source is only read: its ``django_migrations`` rows
and its data are the same afterwards, whichever way it was copied.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from django_rollout.db.cluster import ephemeral_cluster
from tests._project import PG, TOKEN, UNIQUE_BLANK, Project, migration, pg_url, scratch_database

BASELINE = (
    'ROLLOUT = {"start_after": {"contenttypes": "0002_remove_content_type_name",'
    ' "auth": "0012_alter_user_first_name_max_length"}}'
)


def _project(tmp_path: Path, database: dict[str, Any]) -> Project:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_checksum": migration(UNIQUE_BLANK, '[("vault", "0001_initial")]'),
        },
    )
    project.configure(["vault"], database=database, extra=BASELINE)
    return project


def _deployed(project: Project, tokens: int) -> None:
    """Migrate to S0 (vault 0001) as the release in production did, and add its rows."""
    result = project.manage("migrate", "vault", "0001")
    assert result.status == 0, result.stderr
    names = ", ".join(f"('token {i}')" for i in range(tokens))
    result = project.manage(
        "shell",
        "-c",
        f"from django.db import connection; connection.cursor().execute("
        f'"INSERT INTO vault_token (name) VALUES {names}")',
    )
    assert result.status == 0, result.stderr


def _pg_contents(db: dict[str, Any]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(dbname=db["NAME"], **PG) as conn:
        recorded = conn.execute("SELECT id, app, name, applied FROM django_migrations ORDER BY id")
        tokens = conn.execute("SELECT * FROM vault_token ORDER BY id")
        return recorded.fetchall(), tokens.fetchall()


def _scratch_names() -> set[str]:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'rollout_scratch%'")
        return {r[0] for r in rows.fetchall()}


def _rehearse(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = project.run("--settings", project.settings, "rehearse", "--format", "json", *args)
    assert result.status in (0, 1), result.stderr
    doc = result.json()
    assert doc["scratch"]["name"] not in _scratch_names(), "the scratch database was left behind"
    return result.status, doc


@pytest.fixture
def source() -> Iterator[dict[str, Any]]:
    with scratch_database() as db:
        yield db


def test_rehearses_on_a_copy_with_the_real_rows_and_leaves_the_source_unchanged(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    project = _project(tmp_path, source)
    _deployed(project, tokens=3)
    before = _pg_contents(source)

    status, doc = _rehearse(project, "--from-database", "default")

    assert status == 1 and doc["verdict"] == "unsafe"
    assert doc["s0_source"] == "database:default"
    assert doc["unit"] == [["vault", "0002_checksum"]]
    assert doc["scratch"]["copied_from"] == "default"
    assert doc["scratch"]["copy_method"] == "pg_dump | pg_restore"
    with psycopg.connect(dbname="postgres", **PG) as conn:  # the server it ran on, as it says
        (spelled,) = conn.execute("SHOW server_version").fetchone()
    assert spelled.split()[0] == doc["scratch"]["server_version"]
    [step] = doc["steps"]  # S0 is not replayed: the copy has it
    assert step["migration"] == "0002_checksum" and step["status"] == "failed"
    assert step["error"]["sqlstate"] == "23505"
    assert step["seeded_rows"] == 0  # the three real rows broke it, none synthetic
    [d201] = [f for f in doc["findings"] if f["rule"] == "D201"]
    assert d201["confirmed"] is True
    assert doc["timings_s"]["copy_s"] > 0
    assert _pg_contents(source) == before


def test_real_rows_decide_and_rows_adds_synthetic_ones(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    project = _project(tmp_path, source)
    _deployed(project, tokens=1)  # one row: one '' is no duplicate

    status, doc = _rehearse(project, "--from-database", "default", "--no-traffic")
    [step] = doc["steps"]
    assert step["status"] == "applied" and step["seeded_rows"] == 0

    status, doc = _rehearse(project, "--from-database", "default", "--rows", "5", "--no-traffic")
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["seeded_rows"] >= 4  # every table topped up
    assert status == 1


def test_template_copy_and_url_source(tmp_path: Path, source: dict[str, Any]) -> None:
    # The project's own database is elsewhere: the source is named by its URL.
    elsewhere = {**source, "NAME": "rollout_never_created"}
    project = _project(tmp_path, source)
    _deployed(project, tokens=2)
    before = _pg_contents(source)
    _project(tmp_path, elsewhere)

    status, doc = _rehearse(project, "--from-database", pg_url(source), "--template")
    assert doc["scratch"]["copy_method"] == "CREATE DATABASE ... TEMPLATE"
    assert doc["s0_source"] == f"database:{pg_url(source)}"
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"

    status, doc = _rehearse(project, "--from-database", pg_url(source))
    assert doc["scratch"]["copy_method"] == "pg_dump | pg_restore"
    assert doc["steps"][0]["status"] == "failed"
    assert _pg_contents(source) == before


def test_sqlite_source_is_copied_by_backup_and_left_byte_equal(tmp_path: Path) -> None:
    db_file = tmp_path / "prod.sqlite3"
    project = _project(tmp_path, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db_file)})
    _deployed(project, tokens=3)
    digest = hashlib.sha256(db_file.read_bytes()).hexdigest()

    status, doc = _rehearse(project, "--from-database", "default")

    assert doc["scratch"]["vendor"] == "sqlite"
    assert doc["scratch"]["copy_method"] == "sqlite backup"
    assert doc["scratch"]["server_version"] == sqlite3.sqlite_version
    assert not Path(doc["scratch"]["name"]).exists()
    [step] = doc["steps"]
    assert step["status"] == "failed" and "UNIQUE" in step["error"]["message"]
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == digest


def test_template_refused_while_the_source_has_sessions(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    project = _project(tmp_path, source)
    _deployed(project, tokens=2)
    before = _scratch_names()
    with psycopg.connect(dbname=source["NAME"], **PG):  # the application, still connected
        result = project.run(
            "--settings", project.settings, "rehearse", "--from-database", "default", "--template"
        )
    assert result.status == 2
    [line] = result.stderr.strip().splitlines()
    assert "TEMPLATE" in line and "being accessed by other users" in line
    assert _scratch_names() <= before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-database", "postgresql://postgres@127.0.0.1:1/x"], "cannot connect"),
        (["--from-database", "nope"], "no such database alias"),
        (["--from-database", "default", "--since", "HEAD"], "--from-database is S0 itself"),
        (["--template"], "--template copies the database of --from-database"),
        (["--from-database", "mysql://u@h/x"], "unsupported database URL scheme"),
    ],
)
def test_bad_sources_are_one_line_and_exit_2(
    tmp_path: Path, source: dict[str, Any], args: list[str], message: str
) -> None:
    project = _project(tmp_path, source)
    before = _scratch_names()
    result = project.run("--settings", project.settings, "rehearse", *args)
    assert result.status == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert message in line
    assert _scratch_names() <= before


def test_a_database_that_is_not_a_django_database_is_refused(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    project = _project(tmp_path, source)  # the source is empty: never migrated
    before = _scratch_names()
    for target in ("default", pg_url(source)):
        result = project.run("--settings", project.settings, "rehearse", "--from-database", target)
        assert result.status == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "not a Django database" in line
    assert _scratch_names() <= before


def test_wrong_password_is_one_line_exit_2_and_never_echoed(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    # A server that checks passwords: a local cluster whose role `app` needs one.
    with ephemeral_cluster() as cluster:
        with psycopg.connect(**_libpq(cluster.settings()), autocommit=True) as conn:
            conn.execute("CREATE ROLE app LOGIN PASSWORD 'right'")
            conn.execute("CREATE DATABASE appdb OWNER app")
            (cluster.data_dir / "pg_hba.conf").write_text(
                "local all app scram-sha-256\nlocal all all trust\n"
            )
            conn.execute("SELECT pg_reload_conf()")
        project = _project(tmp_path, source)
        before = _scratch_names()
        url = f"postgresql://app:wrong-secret@/appdb?host={cluster.socket_dir}"
        result = project.run("--settings", project.settings, "rehearse", "--from-database", url)
    assert result.status == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert 'password authentication failed for user "app"' in line
    assert "wrong-secret" not in line and "app:***@" in line
    assert _scratch_names() <= before


def _libpq(settings: dict[str, Any]) -> dict[str, Any]:
    return {"dbname": settings["NAME"], "user": settings["USER"], "host": settings["HOST"]}


FLAG_ADDED = 'migrations.AddField("token", "flag", models.IntegerField(null=True))'
FLAG_FILLED = (
    "migrations.RunPython(lambda apps, se: apps.get_model('vault', 'Token').objects"
    ".filter(flag__isnull=True).update(flag=1), migrations.RunPython.noop)"
)
FLAG_REQUIRED = 'migrations.AlterField("token", "flag", models.IntegerField())'
NAME_UNIQUE = (
    'migrations.AddConstraint("token", models.UniqueConstraint(fields=["name"], name="uniq_name"))'
)


def test_adversary_plants_only_in_columns_production_rows_hold(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    # One deploy adds a column, fills it, then makes it NOT NULL: production's rows hold
    # what the fill put there, and a NULL planted through the state in between (which no
    # release runs) would fail a migration that production runs cleanly.
    project = Project(tmp_path)
    after = '[("vault", "0002_flag")]'
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_flag": migration(FLAG_ADDED, '[("vault", "0001_initial")]'),
            "0003_fill": migration(FLAG_FILLED, after),
            "0004_required": migration(FLAG_REQUIRED, '[("vault", "0003_fill")]'),
            "0005_unique": migration(NAME_UNIQUE, '[("vault", "0004_required")]'),
        },
    )
    project.configure(["vault"], database=source, extra=BASELINE)
    _deployed(project, tokens=3)
    status, doc = _rehearse(project, "--from-database", "default", "--no-traffic", "--adversarial")
    steps = {s["migration"]: s for s in doc["steps"]}
    assert steps["0004_required"]["status"] == "applied"
    assert not steps["0004_required"]["adversarial_rows"]
    # A column of S0 still gets its breaking rows: a repeated name fails the constraint.
    assert steps["0005_unique"]["status"] == "failed", steps["0005_unique"]
    assert steps["0005_unique"]["error"]["sqlstate"] == "23505"
    assert sum(steps["0005_unique"]["adversarial_rows"].values()) == 1
    assert status == 1
