from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from django_rollout.findings import Severity
from django_rollout.graph.context import ProjectContext, StartupQuery
from django_rollout.rules.runtime.a601_queries_during_startup import QueriesDuringStartup


def check(queries: list[StartupQuery], error: str | None = None) -> list[Any]:
    pctx = ProjectContext(
        loader=None, judged_apps=lambda label: True, startup_queries=queries, startup_error=error
    )
    return list(QueriesDuringStartup().check_project(pctx))


def test_flags_each_place_that_queried_once() -> None:
    queries = [
        StartupQuery('SELECT COUNT(*) FROM "shop_setting"', "/p/shop/apps.py", 12),
        StartupQuery('SELECT COUNT(*) FROM "shop_setting"', "/p/shop/apps.py", 12),
        StartupQuery('SELECT "shop_flag"."name" FROM "shop_flag"', "/p/shop/models.py", 40),
    ]
    findings = check(queries)
    assert [(f.location.path, f.location.line) for f in findings] == [
        ("/p/shop/apps.py", 12),
        ("/p/shop/models.py", 40),
    ]
    first = findings[0]
    assert first.rule == "A601" and first.severity is Severity.WARNING
    assert first.message.startswith(
        'a query runs while Django starts (`SELECT COUNT(*) FROM "shop_setting"`)'
    )
    assert "half-migrated" in first.message
    assert dict(first.details)["queries"] == 2
    assert first.operation_index is None and first.app_label is None
    assert "/p/shop/apps.py:12" in first.recipe[0]


def test_reports_a_failed_connection_as_attempted() -> None:
    queries = [
        StartupQuery(
            "<connection to database 'default'>",
            "/p/shop/apps.py",
            9,
            error="OperationalError: connection failed: connection to server at port 1 failed",
        )
    ]
    [finding] = check(queries, error="OperationalError: connection failed (/p/shop/apps.py:9)")
    assert finding.message.startswith("a query is attempted while Django starts")
    assert "could not connect: OperationalError" in finding.message
    assert dict(finding.details)["startup_error"].startswith("OperationalError")


def test_reports_a_failed_query_with_its_error() -> None:
    queries = [
        StartupQuery(
            'SELECT "shop_setting"."value" FROM "shop_setting"',
            "/p/shop/apps.py",
            9,
            error='ProgrammingError: relation "shop_setting" does not exist',
        )
    ]
    [finding] = check(queries)
    assert "is attempted" in finding.message
    assert 'and failed: ProgrammingError: relation "shop_setting" does not exist' in finding.message


def test_truncates_long_sql() -> None:
    sql = "SELECT " + ", ".join(f'"col_{i}"' for i in range(100)) + ' FROM "t"'
    [finding] = check([StartupQuery(sql, "/p/a.py", 1)])
    shown = finding.message.split("`")[1]
    assert len(shown) == 120 and shown.endswith("...")
    assert dict(finding.details)["sql"] == sql


def test_reports_query_without_user_frame_without_location() -> None:
    [finding] = check([StartupQuery("SELECT 1", None, None)])
    assert finding.location.path is None and finding.location.line is None
    assert "an unknown place" in finding.recipe[0]


def test_ignores_start_up_without_queries() -> None:
    assert check([]) == []
    assert check([], error=None) == []


# -- end to end: the console script starts a throwaway project ------------------------------

SETTINGS = """\
SECRET_KEY = "x"
INSTALLED_APPS = ["startapp"]
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.postgresql",
    "HOST": "127.0.0.1", "PORT": {port}, "USER": "postgres", "NAME": "{name}",
    "OPTIONS": {{"connect_timeout": 3}},
}}}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""

GUARDED_APPS = """\
from django.apps import AppConfig
from django.db import DatabaseError


class StartAppConfig(AppConfig):
    name = "startapp"

    def ready(self):
        from startapp.models import Setting
        try:
            Setting.objects.count()  # the query
        except DatabaseError:
            pass
"""

UNGUARDED_APPS = """\
from django.apps import AppConfig


class StartAppConfig(AppConfig):
    name = "startapp"

    def ready(self):
        from startapp.models import Setting
        Setting.objects.count()  # the query
"""

MODELS = """\
from django.db import models


class Setting(models.Model):
    key = models.CharField(max_length=50)
"""

INITIAL = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel("Setting", [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=50)),
        ]),
    ]
"""


def make_project(root: Path, apps_py: str, port: int, name: str) -> None:
    (root / "tmpproj").mkdir()
    (root / "tmpproj" / "__init__.py").write_text("")
    (root / "tmpproj" / "settings.py").write_text(SETTINGS.format(port=port, name=name))
    app = root / "startapp"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "apps.py").write_text(apps_py)
    (app / "models.py").write_text(MODELS)
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(INITIAL)


def run_check(root: Path) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "django_rollout", "--settings", "tmpproj.settings", "check"]
        + ["--format", "json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, doc, result.stderr


def ready_line(apps_py: str) -> int:
    return next(i for i, line in enumerate(apps_py.splitlines(), 1) if "# the query" in line)


def a601(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc.get("findings", []) if f["rule"] == "A601"]


@pytest.mark.parametrize("apps_py", [GUARDED_APPS, UNGUARDED_APPS], ids=["guarded", "unguarded"])
def test_console_script_reports_query_attempted_without_a_database(
    tmp_path: Path, apps_py: str
) -> None:
    make_project(tmp_path, apps_py, port=1, name="nothing_listens_here")
    status, doc, stderr = run_check(tmp_path)
    assert status in (0, 1), stderr  # never 2: the check goes on without a database
    [finding] = a601(doc)
    assert finding["path"].endswith(os.path.join("startapp", "apps.py"))
    assert finding["line"] == ready_line(apps_py)
    assert "is attempted" in finding["message"]
    assert "could not connect" in finding["message"]
    assert finding["severity"] == "warning"


@pytest.fixture
def scratch_database() -> Iterator[str]:
    try:
        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    name = f"rollout_a601_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
            conn.execute(
                "CREATE TABLE startapp_setting (id bigserial PRIMARY KEY, key varchar(50))"
            )
        yield name
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_console_script_reports_query_that_succeeds_on_a_real_server(
    tmp_path: Path, scratch_database: str
) -> None:
    make_project(tmp_path, UNGUARDED_APPS, port=5432, name=scratch_database)
    status, doc, stderr = run_check(tmp_path)
    assert status in (0, 1), stderr
    [finding] = a601(doc)
    assert finding["line"] == ready_line(UNGUARDED_APPS)
    assert finding["message"].startswith(
        'a query runs while Django starts (`SELECT COUNT(*) AS "__count" FROM "startapp_setting"`)'
    )
    assert "failed" not in finding["message"]
