"""`rehearse` end to end: a scratch database walked through the unit with old-code traffic.

Each project runs in a subprocess (its own settings). PostgreSQL is the real server of these
machines; the source alias's database is never created: rehearsals only use scratch ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests._project import PG, Project, judged_after_initial, migration, pg_settings

TOKEN = """\
migrations.CreateModel(
    "Token",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.CharField(max_length=40)),
        ("note", models.TextField(null=True)),
    ],
),
"""
AFTER_0001 = '[("vault", "0001_initial")]'

HAZARDS: dict[str, str] = {
    # django-oauth-toolkit 3.0.0: every existing row gets '' and the unique index fails.
    "unique_blank": 'migrations.AddField("token", "checksum", models.CharField(max_length=64,'
    ' unique=True, blank=True, default=""))',
    # The default lives in Python: the old release inserts without the column.
    "python_default": 'migrations.AddField("token", "uses", models.IntegerField(default=0))',
    "dropped_column": 'migrations.RemoveField("token", "note")',
}
SAFE: dict[str, str] = {
    "db_default": 'migrations.AddField("token", "uses", models.IntegerField(db_default=0))',
    "nullable": 'migrations.AddField("token", "uses", models.IntegerField(null=True))',
    "unique_nullable": 'migrations.AddField("token", "checksum", models.CharField('
    "max_length=64, unique=True, null=True))",
}


def _project(tmp_path: Path, second: str, database: dict[str, Any] | None = None) -> Project:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_change": migration(second, AFTER_0001),
        },
    )
    project.configure(
        ["vault"],
        database=database or pg_settings(),
        extra=judged_after_initial("vault"),
    )
    return project


def _scratch_names() -> set[str]:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'rollout_scratch%'"
        ).fetchall()
    return {r[0] for r in rows}


def _rehearse(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = project.run(
        "--settings", project.settings, "rehearse", "--rows", "30", "--format", "json", *args
    )
    assert result.status in (0, 1), result.stderr
    doc = result.json()
    # This run's own scratch database is gone (other runs may have theirs meanwhile).
    scratch = doc["scratch"]
    if scratch["vendor"] == "postgresql":
        assert scratch["name"].startswith("rollout_scratch_")
        assert scratch["name"] not in _scratch_names(), "the scratch database was left behind"
    else:
        assert not Path(scratch["name"]).exists(), "the scratch file was left behind"
    return result.status, doc


def _finding(doc: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [f for f in doc["findings"] if f["rule"] == rule]
    return found


def test_confirms_unique_column_over_existing_rows_with_the_real_error(tmp_path: Path) -> None:
    status, doc = _rehearse(_project(tmp_path, HAZARDS["unique_blank"]))
    assert status == 1 and doc["verdict"] == "unsafe"
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"
    assert step["error"]["table"] == "vault_token"
    assert any("UNIQUE" in s["sql"] for s in step["statements"])
    d201 = _finding(doc, "D201")
    assert d201["confirmed"] is True and d201["severity"] == "error"
    assert "could not create unique index" in d201["observed_error"]
    assert d201["code_version"] is None
    assert doc["command"] == "rehearse" and doc["unit"] == [["vault", "0002_change"]]


def test_confirms_python_default_by_old_code_inserting_without_the_column(
    tmp_path: Path,
) -> None:
    status, doc = _rehearse(_project(tmp_path, HAZARDS["python_default"]))
    assert status == 1 and doc["verdict"] == "unsafe"
    [step] = doc["steps"]
    assert step["status"] == "applied" and step["error"] is None
    c101 = _finding(doc, "C101")
    assert c101["confirmed"] is True and c101["code_version"] == "old"
    assert "[23502]" in c101["observed_error"] and '"uses"' in c101["observed_error"]
    assert doc["traffic"]["errors"]["old"] >= 1


def test_confirms_dropped_column_by_old_code_reading_it(tmp_path: Path) -> None:
    status, doc = _rehearse(_project(tmp_path, HAZARDS["dropped_column"]))
    assert doc["verdict"] == "unsafe"
    c102 = _finding(doc, "C102")
    assert c102["confirmed"] is True and c102["code_version"] == "old"
    assert "[42703]" in c102["observed_error"]
    assert not [f for f in doc["findings"] if f["rule"] is None]


@pytest.mark.parametrize("operation", SAFE.values(), ids=SAFE.keys())
def test_safe_twins_rehearse_clean(tmp_path: Path, operation: str) -> None:
    status, doc = _rehearse(_project(tmp_path, operation))
    assert doc["verdict"] == "safe", doc["findings"]
    assert status == 0
    [step] = doc["steps"]
    assert step["status"] == "applied"
    # Lock findings may be confirmed (traffic waited behind the index build); no error is.
    confirmed = [f for f in doc["findings"] if f.get("confirmed")]
    assert all(f["rule"].startswith("L") and "waited" in f["observed_error"] for f in confirmed)
    assert doc["traffic"]["actions"]["old"] > 0 and not doc["traffic"]["errors"]
    # The statement was traced in-session: the table and its lock mode.
    locks = [lock for s in step["statements"] for lock in s["locks"]]
    assert {"relation": "vault_token", "mode": "AccessExclusiveLock"} in [
        {"relation": lock["relation"], "mode": lock["mode"]} for lock in locks
    ]
    assert all(lock["held_ms"] >= 0 for lock in locks)
    assert not any(lock["sampled"] for lock in locks)  # read in-session: exact


def test_observed_error_no_rule_predicts_is_reported_with_null_rule(tmp_path: Path) -> None:
    # A drop run from Python, which no rule reads: the old release's reads fail all the same.
    code = (
        "migrations.RunPython(lambda apps, editor: editor.execute("
        '"ALTER TABLE vault_token DROP COLUMN note"), migrations.RunPython.noop)'
    )
    status, doc = _rehearse(_project(tmp_path, code))
    assert not [f for f in doc["findings"] if f["rule"] == "C102"]
    unexplained = [f for f in doc["findings"] if f["rule"] is None]
    assert unexplained, doc["findings"]
    # The old release, and the new one (whose models still have the column), both fail.
    assert all(f["confirmed"] and f["code_version"] in ("old", "new") for f in unexplained)
    assert any(f["code_version"] == "old" for f in unexplained)
    assert any("note" in f["message"] and "vault_token" in f["message"] for f in unexplained)
    assert status == 1 and doc["verdict"] == "unsafe"


def test_sqlite_rehearsal_sees_the_failure_and_maps_its_error(tmp_path: Path) -> None:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    status, doc = _rehearse(_project(tmp_path, HAZARDS["unique_blank"], sqlite))
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"
    assert _finding(doc, "D201")["confirmed"] is True
    assert doc["scratch"]["vendor"] == "sqlite" and status == 1


def test_sqlite_is_never_safe_for_a_postgresql_production(tmp_path: Path) -> None:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    project = _project(tmp_path, SAFE["nullable"], sqlite)
    # --no-cluster: no ephemeral PostgreSQL cluster, as on a machine without its binaries.
    status, doc = _rehearse(project, "--vendor", "postgresql", "--no-cluster")
    assert doc["verdict"] == "inconclusive" and status == 0
    status, doc = _rehearse(project)
    assert doc["verdict"] == "safe"


def test_unreachable_server_is_one_line_and_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, SAFE["nullable"], {**pg_settings(), "PORT": 1})
    result = project.run("--settings", project.settings, "rehearse")
    assert result.status == 2
    assert result.stderr.count("\n") == 1 and "scratch database" in result.stderr
    assert "Traceback" not in result.stderr


PLAIN_INDEX = 'migrations.AddIndex("token", models.Index(fields=["name"], name="token_name_idx"))'
CONCURRENT_INDEX = (
    'AddIndexConcurrently("token", models.Index(fields=["name"], name="token_name_idx"))'
)


def test_index_build_on_200000_rows_makes_traffic_wait_and_concurrent_twin_does_not(
    tmp_path: Path,
) -> None:
    waits = {}
    for kind, operation, extra in (
        ("plain", PLAIN_INDEX, ""),
        ("concurrent", CONCURRENT_INDEX, "atomic = False"),
    ):
        root = tmp_path / kind
        project = Project(root)
        text = migration(operation, AFTER_0001, extra)
        text = "from django.contrib.postgres.operations import AddIndexConcurrently\n" + text
        project.app("vault", {"0001_initial": migration(TOKEN), "0002_change": text})
        project.configure(
            ["vault"],
            database=pg_settings(),
            extra=judged_after_initial("vault"),
        )
        result = project.run(
            "--settings",
            project.settings,
            "rehearse",
            "--rows",
            "200000",
            "--format",
            "json",
            timeout=600,  # 200,000 rows seeded and indexed twice: minutes on a loaded machine
        )
        assert result.status in (0, 1), result.stderr
        [step] = result.json()["steps"]
        assert step["status"] == "applied"
        waits[kind] = sum(s["traffic_wait_ms"] or 0 for s in step["statements"])
    assert waits["plain"] > 0, waits
    assert waits["concurrent"] == 0, waits


def _three(tmp_path: Path, second: str, third: str) -> Project:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_change": migration(second, AFTER_0001),
            "0003_more": migration(third, '[("vault", "0002_change")]'),
        },
    )
    project.configure(
        ["vault"],
        database=pg_settings(),
        extra=judged_after_initial("vault"),
    )
    return project


def test_each_migration_on_its_own_goes_on_after_one_fails(tmp_path: Path) -> None:
    # Without a unit flag every migration is its own deploy: 0002 failing must not hide
    # what 0003 does to the release still serving.
    project = _three(tmp_path, HAZARDS["unique_blank"], HAZARDS["dropped_column"])
    status, doc = _rehearse(project)
    first, second = doc["steps"]
    assert first["status"] == "failed" and first["error"]["sqlstate"] == "23505"
    assert "vault_token" in first["recovered"]
    assert second["status"] == "applied" and second["recovered"] is None
    # Each step's migrate time, the failed attempt's included, adds up to the migrate part.
    assert first["migrate_ms"] > 0 and second["migrate_ms"] > 0
    total = first["migrate_ms"] + second["migrate_ms"]
    assert abs(total - doc["timings_s"]["migrate_s"] * 1000) < 1.5
    assert _finding(doc, "D201")["confirmed"] is True
    c102 = _finding(doc, "C102")
    assert c102["confirmed"] is True and c102["migration"] == "0003_more"
    assert "[42703]" in c102["observed_error"]
    assert status == 1


UNIQUE_NAME = (
    'migrations.AddConstraint("token", models.UniqueConstraint(fields=["name"],'
    ' name="token_name_uniq"))'
)
NAME_NOT_EMPTY = (
    'migrations.AddConstraint("token", models.CheckConstraint(condition=~models.Q(name=""),'
    ' name="token_name_not_empty"))'
)


def test_adversarial_rows_break_a_new_unique_constraint(tmp_path: Path) -> None:
    project = _project(tmp_path, UNIQUE_NAME)
    # Seeded names are distinct: the constraint goes in, the warning stays unconfirmed.
    status, doc = _rehearse(project)
    [step] = doc["steps"]
    assert step["status"] == "applied" and step["adversarial_rows"] is None
    assert _finding(doc, "D201")["confirmed"] is False
    # A row repeating another's name: the index build fails, and old code, which does not
    # know the constraint, writes a duplicate after it.
    status, doc = _rehearse(project, "--adversarial")
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"
    assert sum(step["adversarial_rows"].values()) == 1
    d201 = _finding(doc, "D201")
    assert d201["confirmed"] is True and d201["code_version"] is None
    c108 = _finding(doc, "C108")
    assert c108["confirmed"] is True and c108["code_version"] == "old"
    assert "token_name_uniq" in c108["observed_error"]
    assert status == 1 and not [f for f in doc["findings"] if f["rule"] is None]


def test_adversarial_rows_break_a_new_check_found_by_asking_the_database(
    tmp_path: Path,
) -> None:
    status, doc = _rehearse(_project(tmp_path, NAME_NOT_EMPTY), "--adversarial")
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23514"
    d204 = _finding(doc, "D204")
    assert d204["confirmed"] is True and "token_name_not_empty" in d204["observed_error"]


def test_adversarial_rows_leave_a_safe_twin_safe(tmp_path: Path) -> None:
    # A unique column that arrives NULL everywhere: nothing to repeat, nothing breaks.
    status, doc = _rehearse(_project(tmp_path, SAFE["unique_nullable"]), "--adversarial")
    assert doc["verdict"] == "safe" and status == 0, doc["findings"]


TAG = """migrations.CreateModel(
    "Tag",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("token", models.ForeignKey("vault.token", on_delete=models.CASCADE)),
    ],
)
"""


def test_rollout_old_code_deleting_what_new_rows_point_at_confirms_c109(
    tmp_path: Path,
) -> None:
    # New code tags tokens; old code, which has no Tag, deletes a tagged token: its ORM
    # does not cascade along a relation it does not know, and the database refuses.
    status, doc = _rehearse(_project(tmp_path, TAG))
    c109 = _finding(doc, "C109")
    assert c109["confirmed"] is True and c109["code_version"] == "old"
    assert "[23503]" in c109["observed_error"]
    assert not [f for f in doc["findings"] if f["rule"] is None]


def test_data_migration_through_the_default_alias_sees_its_own_transaction(
    tmp_path: Path,
) -> None:
    # AddField takes ACCESS EXCLUSIVE; the RunPython then writes through Model.objects (the
    # default alias), as most data migrations do. Under migrate that is one session; a
    # second session would wait for the first's lock forever.
    backfill = (
        'migrations.AddField("token", "uses", models.IntegerField(null=True)),\n'
        "migrations.RunPython(lambda apps, se: apps.get_model('vault', 'Token')"
        ".objects.update(uses=1), migrations.RunPython.noop),"
    )
    status, doc = _rehearse(_project(tmp_path, backfill), "--no-traffic")
    [step] = doc["steps"]
    assert step["status"] == "applied", step["error"]
    assert any(s["sql"].startswith("UPDATE") for s in step["statements"])
