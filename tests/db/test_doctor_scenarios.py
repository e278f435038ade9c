"""`doctor`, the acceptance scenarios of issue 4, each on a scratch PostgreSQL database.

Every scenario is a tiny project on disk (``tests/_project.py``) whose history is broken the
way it breaks in the field: a column added by hand, one dropped by hand, older code deployed
over a newer database (the django-constance rollback), a squash applied halfway or whose
replaced files went too early, a non-atomic migration that failed halfway. ``migrate`` and
``django-rollout doctor`` run in subprocesses, as a person would run them; the database is
then read directly to check what the repair left.

Versions of an app are one migrations folder: v2 written whole, v1 is v2 with its newest
files deleted (a rollback deploys exactly that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests._project import HEADER, PG, Project, Result, migration, pg_url, scratch_database

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"

# --- the apps ----------------------------------------------------------------------------

BOOK = """\
migrations.CreateModel(
    "Book",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("title", models.CharField(max_length=40)),
    ],
),
"""
ISBN = 'migrations.AddField("book", "isbn", models.CharField(max_length=13, null=True))'
PAGES = 'migrations.AddField("book", "pages", models.IntegerField(null=True))'
AFTER_1 = '[("shelf", "0001_initial")]'
AFTER_2 = '[("shelf", "0002_book_isbn")]'

SHELF = {
    "0001_initial": migration(BOOK),
    "0002_book_isbn": migration(ISBN, AFTER_1),
    "0003_book_pages": migration(PAGES, AFTER_2),
}

SQUASH = "0001_squashed_0003_book_pages"
SQUASHED = migration(
    """\
    migrations.CreateModel(
        "Book",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("title", models.CharField(max_length=40)),
            ("isbn", models.CharField(max_length=13, null=True)),
            ("pages", models.IntegerField(null=True)),
        ],
    ),
    """,
    extra="""\
    replaces = [
        ("shelf", "0001_initial"),
        ("shelf", "0002_book_isbn"),
        ("shelf", "0003_book_pages"),
    ]
    """,
)

# A non-atomic migration: two columns, then a unique constraint that duplicate titles break.
HALF = "0002_book_unique_title"
NON_ATOMIC = {
    "0001_initial": migration(BOOK),
    HALF: migration(
        """\
        migrations.AddField("book", "summary", models.TextField(null=True)),
        migrations.AddField("book", "rating", models.IntegerField(null=True)),
        migrations.AlterField("book", "title", models.CharField(max_length=40, unique=True)),
        """,
        AFTER_1,
        extra="atomic = False",
    ),
}

# django-constance 2.x -> 3.x moved its table: a new model, a RunPython copying the rows over,
# then the old model deleted. `conf` does the same with its own names.
CONFIG = """\
migrations.CreateModel(
    "Config",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("key", models.CharField(max_length=255, unique=True)),
        ("value", models.TextField(null=True)),
    ],
),
"""
SETTING = CONFIG.replace('"Config"', '"Setting"').replace('"key"', '"name"')
COPY = (
    HEADER
    + """\
def copy(apps, schema_editor):
    Config = apps.get_model("conf", "Config")
    Setting = apps.get_model("conf", "Setting")
    Setting.objects.bulk_create(
        Setting(name=c.key, value=c.value) for c in Config.objects.all()
    )


class Migration(migrations.Migration):
    dependencies = [("conf", "0002_setting")]
    operations = [migrations.RunPython(copy, migrations.RunPython.noop)]
"""
)
CONF_V1 = {"0001_initial": migration(CONFIG)}
CONF_V2 = {
    **CONF_V1,
    "0002_setting": migration(SETTING, '[("conf", "0001_initial")]'),
    "0003_copy_config": COPY,
    "0004_delete_config": migration(
        'migrations.DeleteModel("Config")', '[("conf", "0003_copy_config")]'
    ),
}


# --- the site: a project, its database, and the commands people run ----------------------


@dataclass
class Site:
    project: Project
    database: dict[str, Any]

    def app(self, label: str, migrations: Mapping[str, str]) -> None:
        self.project.app(label, migrations)

    def remove(self, label: str, *names: str) -> None:
        """Deploy the older code: the newest migration files are gone."""
        for name in names:
            (self.project.root / label / "migrations" / f"{name}.py").unlink()

    def manage(self, *args: str) -> Result:
        return self.project.manage(*args)

    def migrate(self, *args: str) -> None:
        result = self.manage("migrate", "--no-input", "-v0", *args)
        assert result.status == 0, result.stderr

    def migrate_check(self) -> int:
        return self.manage("migrate", "--check", "-v0").status

    def doctor(self, *args: str) -> Result:
        return self.project.run("--settings", self.project.settings, "doctor", *args)

    def report(self, *args: str) -> dict[str, Any]:
        result = self.doctor("--format", "json", *args)
        assert result.status in (0, 1, 3), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        doc = result.json()
        doc["status"] = result.status
        return doc

    def repair(self, backup: Path) -> dict[str, Any]:
        return self.report("--apply", "--no-input", "--backup", str(backup))

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dbname=self.database["NAME"], autocommit=True, **PG) as conn:
            cursor = conn.execute(query)
            return cursor.fetchall() if cursor.description else []

    def columns(self, table: str) -> set[str]:
        rows = self.sql(
            "SELECT column_name FROM information_schema.columns"
            f" WHERE table_schema = 'public' AND table_name = '{table}'"
        )
        return {r[0] for r in rows}

    def tables(self) -> set[str]:
        rows = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}

    def recorded(self, app: str) -> list[str]:
        rows = self.sql(f"SELECT name FROM django_migrations WHERE app = '{app}' ORDER BY name")
        return [r[0] for r in rows]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with scratch_database() as database:
        project = Project(tmp_path / "project")
        yield Site(project, database)


def configure(site: Site, *apps: str) -> None:
    site.project.configure(list(apps), database=site.database)


def rules(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((f["rule"], f["app_label"], f["migration"]) for f in doc["findings"])


def steps(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["action"], r["app_label"], r["migration"]) for r in doc["repair"]]


def assert_clean(site: Site) -> None:
    """What every repair must leave: doctor has nothing to say, `migrate --check` agrees."""
    doc = site.report()
    assert doc["findings"] == [], [f["message"] for f in doc["findings"]]
    assert doc["repair"] == []
    assert doc["status"] == 0
    assert site.migrate_check() == 0


def one_finding(doc: Mapping[str, Any], rule: str, migration: str) -> dict[str, Any]:
    [found] = [f for f in doc["findings"] if f["rule"] == rule and f["migration"] == migration]
    return found


# --- no false alarms ---------------------------------------------------------------------


def _shelf(site: Site) -> None:
    site.app("shelf", SHELF)
    configure(site, "shelf")


def _conf(site: Site) -> None:
    site.app("conf", CONF_V2)
    configure(site, "conf")


def _squashed(site: Site) -> None:
    site.app("shelf", {**SHELF, SQUASH: SQUASHED})
    configure(site, "shelf")


def _non_atomic(site: Site) -> None:
    site.app("shelf", NON_ATOMIC)
    configure(site, "shelf")


@pytest.mark.parametrize("build", [_shelf, _conf, _squashed, _non_atomic])
def test_reports_nothing_on_a_freshly_migrated_database(site: Site, build: Any) -> None:
    build(site)
    site.migrate()
    doc = site.report()
    assert doc["findings"] == [], [f["message"] for f in doc["findings"]]
    assert doc["repair"] == [] and doc["migrations"]["pending"] == []
    assert doc["status"] == 0


def test_reports_nothing_for_apps_not_migrated_yet(site: Site) -> None:
    # `migrate shelf` alone: contenttypes and auth have neither records nor tables. Their
    # migrations are pending, not applied by hand, and not "changed by hand".
    _shelf(site)
    site.migrate("shelf")
    assert site.tables() == {"django_migrations", "shelf_book"}
    doc = site.report("--fail-on", "info")
    assert doc["findings"] == [], [f["message"] for f in doc["findings"]]
    assert doc["repair"] == []
    assert ["auth", "0001_initial"] in doc["migrations"]["pending"]
    assert doc["status"] == 0


def _shop(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["ROLLOUT_EXAMPLE_DB"] = db
    env["PYTHONPATH"] = os.pathsep.join([str(SHOP), str(ROOT / "src")])
    return subprocess.run(
        [sys.executable, *args],
        cwd=SHOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_reports_nothing_on_the_freshly_migrated_example_shop() -> None:
    with scratch_database() as database:
        done = _shop(database["NAME"], "manage.py", "migrate", "--no-input", "-v0")
        assert done.returncode == 0, done.stderr
        result = _shop(
            database["NAME"],
            *("-m", "django_rollout", "--settings", "shop.settings"),
            *("doctor", "--format", "json"),
        )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["findings"] == [], [f["message"] for f in doc["findings"]]
    assert doc["repair"] == []


# --- 1. a column added by hand, its migration not recorded --------------------------------


def test_records_migration_whose_column_was_added_by_hand(site: Site, tmp_path: Path) -> None:
    _shelf(site)
    site.migrate()
    site.migrate("shelf", "0002_book_isbn")  # 0003 reversed: `pages` dropped, unrecorded
    site.sql("ALTER TABLE shelf_book ADD COLUMN pages integer NULL")  # 0003, during an incident
    assert site.migrate_check() == 1

    doc = site.report("--fail-on", "warning")

    assert rules(doc) == [("H502", "shelf", "0003_book_pages")]
    assert doc["status"] == 1
    [evidence] = doc["findings"][0]["evidence"]
    assert evidence["operation_index"] == 0 and evidence["operation"] == "AddField"
    assert "shelf_book.pages" in evidence["object"] and evidence["observed"] == "is present"
    assert steps(doc) == [("record", "shelf", "0003_book_pages")]
    assert doc["migrations"]["pending"] == []

    backup = tmp_path / "backup.json"
    after = site.repair(backup)

    assert after["applied"]["records_changed"] == 1
    assert after["applied"]["migrations_run"] == []
    assert site.recorded("shelf") == ["0001_initial", "0002_book_isbn", "0003_book_pages"]
    saved = json.loads(backup.read_text())
    names = {(r["app"], r["name"]) for r in saved["rows"]}
    assert ("shelf", "0002_book_isbn") in names and ("shelf", "0003_book_pages") not in names
    assert {"id", "app", "name", "applied"} <= set(saved["rows"][0])
    assert len(saved["rows"]) == len(site.sql("SELECT 1 FROM django_migrations")) - 1
    assert_clean(site)


# --- 2. a migration recorded, its column missing ------------------------------------------


@pytest.mark.parametrize(
    ("dropped", "column"), [("0002_book_isbn", "isbn"), ("0003_book_pages", "pages")]
)
def test_unrecords_and_reruns_migration_whose_column_is_missing(
    site: Site, tmp_path: Path, dropped: str, column: str
) -> None:
    _shelf(site)
    site.migrate()
    site.sql(f"ALTER TABLE shelf_book DROP COLUMN {column}")
    assert site.migrate_check() == 0  # Django trusts the records: nothing to do

    doc = site.report()

    assert rules(doc) == [("H501", "shelf", dropped)]
    assert doc["status"] == 1
    finding = doc["findings"][0]
    assert finding["severity"] == "error"
    [evidence] = finding["evidence"]
    assert f"shelf_book.{column}" in evidence["object"]
    assert evidence["expected"] == "present" and evidence["observed"] == "is missing"
    assert steps(doc) == [("unrecord", "shelf", dropped), ("migrate", "shelf", dropped)]
    run = doc["repair"][1]
    if dropped == "0002_book_isbn":
        # 0003 stays recorded: `migrate shelf 0002` would refuse (or go backwards).
        assert run["command"] != "python manage.py migrate shelf 0002_book_isbn"
        assert "--fake" not in run["command"]

    after = site.repair(tmp_path / "backup.json")

    assert after["applied"]["records_changed"] == 1
    assert after["applied"]["migrations_run"] == [["shelf", dropped]]
    assert {"isbn", "pages"} <= site.columns("shelf_book")
    assert site.recorded("shelf") == ["0001_initial", "0002_book_isbn", "0003_book_pages"]
    assert_clean(site)


# --- 3. records the code does not know: the code is older than the database ---------------


def test_names_the_newer_migration_when_older_code_runs_on_a_newer_database(site: Site) -> None:
    _shelf(site)
    site.migrate()
    site.remove("shelf", "0003_book_pages")  # release 1 deployed back

    doc = site.report()

    assert rules(doc) == [("H503", "shelf", "0003_book_pages")]
    assert doc["status"] == 1
    finding = doc["findings"][0]
    assert finding["severity"] == "error"
    assert "`shelf.0003_book_pages`" in finding["message"]
    assert "shelf.0003_book_pages" in finding["help"]  # the release the database needs
    assert finding["details"]["unknown"] == ["shelf.0003_book_pages"]
    # Not repaired by editing records: un-recording would leave `pages` unexplained.
    assert doc["repair"] == []

    assert site.doctor("--code-age").status == 3
    aged = site.report("--code-age")
    assert rules(aged) == [("H503", "shelf", "0003_book_pages")]

    site.app("shelf", SHELF)  # release 2 again
    assert site.doctor("--code-age").status == 0
    assert_clean(site)


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=Rollout", "-c", "user.email=rollout@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return proc.stdout.strip()


def test_names_the_commit_that_added_the_migration_the_code_lacks(site: Site) -> None:
    _shelf(site)
    site.migrate()
    root = site.project.root
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "release 2: book pages")
    commit = _git(root, "rev-parse", "--short", "HEAD")
    site.remove("shelf", "0003_book_pages")

    doc = site.report()

    [finding] = doc["findings"]
    assert finding["rule"] == "H503" and finding["migration"] == "0003_book_pages"
    assert commit in finding["message"]
    assert "release 2: book pages" in finding["message"]
    assert commit in finding["help"]
    assert site.doctor("--code-age").status == 3


# --- 4. the django-constance rollback ------------------------------------------------------


def test_diagnoses_older_code_deployed_over_a_moved_table(site: Site) -> None:
    site.app("conf", CONF_V2)
    configure(site, "conf")
    site.migrate("conf", "0001_initial")
    site.sql("INSERT INTO conf_config (key, value) VALUES ('SITE_NAME', 'shop')")
    site.migrate()
    assert site.sql("SELECT name, value FROM conf_setting") == [("SITE_NAME", "shop")]
    site.remove("conf", "0002_setting", "0003_copy_config", "0004_delete_config")

    doc = site.report()

    assert rules(doc) == [("H501", "conf", "0001_initial"), ("H503", "conf", "0004_delete_config")]
    h503 = one_finding(doc, "H503", "0004_delete_config")
    assert h503["details"]["unknown"] == [
        "conf.0002_setting",
        "conf.0003_copy_config",
        "conf.0004_delete_config",
    ]
    h501 = one_finding(doc, "H501", "0001_initial")
    assert any(
        "conf_config" in e["object"] and e["observed"] == "is missing" for e in h501["evidence"]
    )
    # The table is gone because a newer migration deleted it: re-running 0001 under the
    # older code would bring an empty table back and hide the real cause.
    assert ("unrecord", "conf", "0001_initial") not in steps(doc)
    assert site.doctor("--code-age").status == 3


def test_repairs_the_hand_made_recovery_from_the_constance_rollback(
    site: Site, tmp_path: Path
) -> None:
    site.app("conf", CONF_V2)
    configure(site, "conf")
    site.migrate()
    # The recovery seen in the field: with the newer code, "un-apply" by faking back to 0001.
    site.migrate("conf", "0001_initial", "--fake")
    assert site.recorded("conf") == ["0001_initial"]
    assert "conf_setting" in site.tables() and "conf_config" not in site.tables()

    doc = site.report("--fail-on", "warning")

    assert doc["status"] == 1
    assert ("H502", "conf", "0002_setting") in rules(doc)
    assert ("H502", "conf", "0004_delete_config") in rules(doc)
    assert not [f for f in doc["findings"] if f["rule"] in ("H501", "H503")]
    assert steps(doc) == [
        ("record", "conf", "0002_setting"),
        ("record", "conf", "0003_copy_config"),
        ("record", "conf", "0004_delete_config"),
    ]
    copy = doc["repair"][1]
    assert "observ" in copy["why"]  # RunPython: recorded on the evidence around it, said so
    assert doc["migrations"]["pending"] == []

    after = site.repair(tmp_path / "backup.json")

    assert after["applied"]["records_changed"] == 3
    assert after["applied"]["migrations_run"] == []
    assert site.recorded("conf") == list(CONF_V2)
    assert_clean(site)


# --- 5. squashes ---------------------------------------------------------------------------


def test_warns_about_a_squash_partly_applied(site: Site) -> None:
    _shelf(site)
    site.migrate()
    site.migrate("shelf", "0002_book_isbn")
    site.app("shelf", {SQUASH: SQUASHED})  # the squash ships beside the replaced files

    doc = site.report("--fail-on", "warning")

    assert rules(doc) == [("H504", "shelf", SQUASH)]
    [finding] = doc["findings"]
    assert finding["severity"] == "warning"
    assert "0003_book_pages" in finding["message"]
    assert doc["status"] == 1

    site.migrate()  # Django finishes with the replaced files, then records the squash
    assert_clean(site)


def test_reports_a_squash_whose_replaced_files_were_deleted_too_early(site: Site) -> None:
    _shelf(site)
    site.migrate()
    site.migrate("shelf", "0002_book_isbn")
    site.app("shelf", {SQUASH: SQUASHED})
    site.remove("shelf", "0001_initial", "0002_book_isbn", "0003_book_pages")

    doc = site.report()

    assert rules(doc) == [("H504", "shelf", SQUASH)]
    [finding] = doc["findings"]
    assert finding["severity"] == "error"
    assert "\n" not in finding["message"]
    assert "0003_book_pages" in finding["message"]
    assert doc["status"] == 1

    text = site.doctor()
    assert text.status == 1
    assert "Traceback" not in text.stderr and "H504" in text.stdout


# --- 6. a non-atomic migration that failed halfway ----------------------------------------


def test_finishes_a_non_atomic_migration_that_failed_halfway(site: Site, tmp_path: Path) -> None:
    _non_atomic(site)
    site.migrate()
    site.migrate("shelf", "0001_initial")
    site.sql("INSERT INTO shelf_book (title) VALUES ('Dune'), ('Dune'), ('Emma')")
    failed = site.manage("migrate", "--no-input", "-v0")
    assert failed.status != 0 and "unique" in failed.stderr.lower()
    assert {"summary", "rating"} <= site.columns("shelf_book")  # committed one by one

    doc = site.report()

    assert rules(doc) == [("H502", "shelf", HALF)]
    assert doc["status"] == 1
    finding = doc["findings"][0]
    assert finding["severity"] == "error"
    assert "half-applied" in finding["message"]
    done = {e["operation_index"] for e in finding["evidence"] if e["observed"] == "is present"}
    not_done = {e["operation_index"] for e in finding["evidence"] if e["observed"] != "is present"}
    assert done == {0, 1} and not_done == {2}
    assert any("shelf_book.summary" in e["object"] for e in finding["evidence"])
    assert any("title" in e["object"] for e in finding["evidence"] if e["operation_index"] == 2)
    assert steps(doc) == [("migrate", "shelf", HALF)]
    assert doc["repair"][0]["operations"] == [2]

    # The cause is still there: the repair fails in one line and records nothing.
    refused = site.doctor("--apply", "--no-input", "--backup", str(tmp_path / "first.json"))
    assert refused.status == 2, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert HALF in line
    assert site.recorded("shelf") == ["0001_initial"]

    site.sql(
        "DELETE FROM shelf_book WHERE id NOT IN (SELECT min(id) FROM shelf_book GROUP BY title)"
    )
    after = site.repair(tmp_path / "backup.json")

    assert after["applied"]["migrations_run"] == [["shelf", HALF]]
    assert site.recorded("shelf") == ["0001_initial", HALF]
    assert site.sql(
        "SELECT 1 FROM pg_indexes WHERE tablename = 'shelf_book'"
        " AND indexdef LIKE 'CREATE UNIQUE%(title)'"
    )
    assert_clean(site)


# --- bad input -----------------------------------------------------------------------------


def _one_line_exit_2(result: Result, *words: str) -> None:
    assert result.status == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    for word in words:
        assert word in line, line


def test_an_unreachable_database_is_one_line_and_exit_2(site: Site) -> None:
    _shelf(site)
    result = site.doctor("--database", "postgresql://postgres@127.0.0.1:1/x")
    _one_line_exit_2(result, "cannot connect")
    assert (
        site.doctor("--database", "postgresql://postgres@127.0.0.1:1/x", "--code-age").status == 2
    )


def test_a_database_without_django_migrations_is_one_line_and_exit_2(site: Site) -> None:
    _shelf(site)  # never migrated
    _one_line_exit_2(site.doctor(), "not a Django database")
    _one_line_exit_2(site.doctor("--database", pg_url(site.database)), "not a Django database")


@pytest.mark.parametrize("label", ["nosuchapp", "plain"])
def test_an_app_label_without_migrations_is_one_line_and_exit_2(site: Site, label: str) -> None:
    site.app("shelf", SHELF)
    site.project.write("plain/__init__.py", "")  # installed, no migrations folder
    site.project.write("plain/models.py", "")
    configure(site, "shelf", "plain")
    site.migrate()
    _one_line_exit_2(site.doctor(label), label)
