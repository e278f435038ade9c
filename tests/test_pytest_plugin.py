"""The pytest plugin, as a user's test suite meets it: pytest run in a throwaway project.

Each suite runs in a subprocess (settings are per process), with the plugin loaded through
its ``pytest11`` entry point, as an installed django-rollout gives it to every project.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests._project import (
    TOKEN,
    UNIQUE_BLANK,
    Project,
    Result,
    judged_after_initial,
    migration,
    pg_settings,
)

NULLABLE = 'migrations.AddField("token", "uses", models.IntegerField(null=True))'

SAFE_TEST = """\
def test_pending_migrations_are_safe(rollout_rehearsal):
    report = rollout_rehearsal(rows=30)
    assert report.extra["verdict"] == "safe"
    assert report.unit == (("vault", "0002_change"),)
"""


def _project(tmp_path: Path, second: str) -> Project:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_change": migration(second, '[("vault", "0001_initial")]'),
        },
    )
    # The default alias's database is never created: the rehearsal only uses scratch ones.
    project.configure(
        ["vault"],
        database=pg_settings(),
        extra=judged_after_initial("vault"),
    )
    project.write("pytest.ini", "[pytest]\n")
    return project


def _pytest(project: Project, tests: str, *, pytest_django: bool = False) -> Result:
    """Run pytest on ``tests`` in the project, as its developer would; without
    pytest-django (if installed) unless asked, with DJANGO_SETTINGS_MODULE instead."""
    project.write("test_migrations.py", textwrap.dedent(tests))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    args = ["-p", "no:cacheprovider", "-q"]
    if not pytest_django:
        env["DJANGO_SETTINGS_MODULE"] = project.settings
        args += ["-p", "no:django"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_is_registered_as_a_pytest11_entry_point() -> None:
    [plugin] = [e for e in entry_points(group="pytest11") if e.name == "django_rollout"]
    assert plugin.value == "django_rollout.pytest_plugin"


def test_fails_the_test_with_the_report_on_a_hazardous_migration(tmp_path: Path) -> None:
    result = _pytest(
        _project(tmp_path, UNIQUE_BLANK),
        """\
        def test_pending_migrations_are_safe(rollout_rehearsal):
            rollout_rehearsal(rows=30)
        """,
    )
    assert result.status == 1, result.stdout + result.stderr
    # A headline first: the line pytest's short summary shows.
    assert "django-rollout rehearse: verdict unsafe; 3 error(s)" in result.stdout
    # The text report: the rule, the database's own error, the failed step and the verdict.
    assert "D201" in result.stdout
    assert "could not create unique index" in result.stdout
    assert "FAILED vault.0002_change: [23505]" in result.stdout
    assert "verdict: unsafe" in result.stdout
    # pytrace=False: the report, not the plugin's traceback; and no colour codes.
    assert "pytest_plugin.py" not in result.stdout and "\x1b[" not in result.stdout


def test_returns_the_report_of_a_safe_migration(tmp_path: Path) -> None:
    result = _pytest(_project(tmp_path, NULLABLE), SAFE_TEST)
    assert result.status == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_fail_on_info_fails_on_what_error_lets_pass(tmp_path: Path) -> None:
    result = _pytest(
        _project(tmp_path, NULLABLE),
        """\
        def test_pending_migrations_are_safe(rollout_rehearsal):
            rollout_rehearsal(rows=30, fail_on="info")
        """,
    )
    assert result.status == 1, result.stdout + result.stderr
    assert "L306" in result.stdout and "(fail on info)" in result.stdout
    assert "verdict: safe" in result.stdout


def test_bad_input_fails_the_test_with_one_line(tmp_path: Path) -> None:
    result = _pytest(
        _project(tmp_path, UNIQUE_BLANK),
        """\
        def test_bad_input_is_one_line(rollout_rehearsal):
            rollout_rehearsal(since="HEAD", database="default")
        """,
    )
    assert result.status == 1
    assert "django-rollout: error: use only one of --since, --database" in result.stdout
    assert "Traceback" not in result.stdout


def test_is_inert_in_a_suite_that_does_not_use_it(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("pytest.ini", "[pytest]\n")
    # Settings that cannot even be imported: the plugin must never read them.
    project.write("proj_settings.py", "raise RuntimeError('settings were read')\n")
    result = _pytest(
        project,
        """\
        import sys

        def test_plugin_is_loaded_and_imports_nothing(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("django_rollout")
            assert "django_rollout.pytest_plugin" in sys.modules
            assert "django" not in sys.modules
            assert "django_rollout.api" not in sys.modules
        """,
    )
    assert result.status == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


BLOCKER = """\
from contextlib import contextmanager

import pytest


class Blocker:
    \"\"\"What pytest-django's django_db_blocker does: every connection attempt raises.\"\"\"

    def __init__(self):
        from django.db.backends.base.base import BaseDatabaseWrapper

        self.wrapper = BaseDatabaseWrapper
        self.real = BaseDatabaseWrapper.ensure_connection

    def block(self):
        def blocked(*args, **kwargs):
            raise RuntimeError("Database access not allowed")

        self.wrapper.ensure_connection = blocked

    @contextmanager
    def unblock(self):
        self.wrapper.ensure_connection = self.real
        try:
            yield
        finally:
            self.block()


@pytest.fixture(scope="session")
def django_db_blocker():
    import django

    django.setup()
    blocker = Blocker()
    blocker.block()
    return blocker
"""


def test_unblocks_database_access_that_pytest_django_blocks(tmp_path: Path) -> None:
    project = _project(tmp_path, NULLABLE)
    project.write("conftest.py", BLOCKER)
    result = _pytest(
        project,
        "import pytest\n\n"
        + SAFE_TEST
        + """
def test_access_is_blocked_again_after(rollout_rehearsal, django_db_blocker):
    from django.db import connection

    rollout_rehearsal(rows=30, traffic=False)
    with pytest.raises(RuntimeError, match="not allowed"):
        connection.ensure_connection()
""",
    )
    assert result.status == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_runs_under_pytest_django(tmp_path: Path) -> None:
    pytest.importorskip("pytest_django")
    project = _project(tmp_path, NULLABLE)
    project.write("pytest.ini", f"[pytest]\nDJANGO_SETTINGS_MODULE = {project.settings}\n")
    result = _pytest(project, SAFE_TEST, pytest_django=True)
    assert result.status == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_refuses_a_test_that_also_uses_the_test_database(tmp_path: Path) -> None:
    pytest.importorskip("pytest_django")
    project = _project(tmp_path, NULLABLE)
    project.write("pytest.ini", f"[pytest]\nDJANGO_SETTINGS_MODULE = {project.settings}\n")
    result = _pytest(
        project,
        """\
        import pytest

        def test_with_db(db, rollout_rehearsal):
            rollout_rehearsal(rows=30)

        @pytest.mark.django_db
        def test_with_mark(rollout_rehearsal):
            rollout_rehearsal(rows=30)
        """,
        pytest_django=True,
    )
    assert "2 error" in result.stdout, result.stdout + result.stderr
    assert "drop 'db' from this test" in result.stdout
    assert "drop the django_db mark from this test" in result.stdout
