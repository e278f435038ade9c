"""A real third-party upgrade, rehearsed: django-oauth-toolkit 2.4.0 -> 3.0.0 and -> 3.0.1.

What the migrations do (read from the wheels of the three versions):

* 2.4.0 ends at ``0010_application_allowed_origins``; ``0008`` left ``AccessToken.token`` a
  ``CharField(max_length=255, unique=True, db_index=True)``.
* 3.0.0 adds ``0011_refreshtoken_token_family`` (a nullable UUID, harmless) and
  ``0012_add_token_checksum``: ``AddField(accesstoken.token_checksum,
  TokenChecksumField(max_length=64, blank=True, unique=True, db_index=True))``, neither null
  nor a default, then ``AlterField(token, TextField())``. ``TokenChecksumField`` computes the
  checksum in ``pre_save``, which ``ADD COLUMN`` never calls: Django fills every existing row
  with ``''`` (``ADD COLUMN ... DEFAULT '' NOT NULL UNIQUE``), so with two access tokens the
  unique index fails on the duplicated empty checksum (23505, "could not create unique
  index"; the DETAIL ``Key (token_checksum)=() is duplicated`` is not in the report).
* 3.0.1 (only ``0012`` and the field's ``blank`` changed) rewrites ``0012`` in place: add the
  column nullable, no index; ``AlterField(token, TextField())``; ``RunPython`` saving every
  token with ``update_fields=["token_checksum"]`` (``pre_save`` fills the checksum); then
  ``AlterField`` to ``NOT NULL UNIQUE`` (db_index). On real, distinct tokens the migration
  succeeds; its net effect on S0 is still a NOT NULL column with no database default, so the
  2.4.0 release, still serving during the rollout, inserts tokens without it and fails (23502):
  ``check`` reports C101 on operation 3 of ``0012``, and the rehearsal confirms it.

Each version is installed with pip into a temporary directory of its own (its dependencies,
never Django, in one shared directory); each step runs in a subprocess whose PYTHONPATH puts
that version first, with this interpreter's Django and django-rollout. Needs PyPI (or pip's
cache) and the PostgreSQL server of the other db tests.

Validated with both command variants in ``REHEARSE`` below (``--from-database`` is current).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

import psycopg
import pytest
from packaging.requirements import Requirement

from tests._project import PG, Project, scratch_database

OLD, BROKEN, FIXED = "2.4.0", "3.0.0", "3.0.1"
MIGRATION = "0012_add_token_checksum"
TOKENS = "oauth2_provider_accesstoken"
# The rehearsal's command line. Before --from-database existed the scenario was validated
# with the scratch database walked from empty and topped up with synthetic rows:
#   ("rehearse", "--database", "default", "--rows", "3", "--format", "json")
REHEARSE = ("rehearse", "--from-database", "default", "--rows", "0", "--format", "json")
# A rehearsal of this project takes a few seconds; past this it is stuck.
HUNG_AFTER_S = 120

FILL = """\
import django
django.setup()
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
user = get_user_model().objects.create_user("alice")
app = Application.objects.create(
    name="app", user=user, client_type="confidential",
    authorization_grant_type="client-credentials",
)
for i in range(3):
    AccessToken.objects.create(
        user=user, application=app, token=f"token-{i}", scope="read",
        expires=timezone.now() + timedelta(days=1),
    )
"""


class RehearsalHung(AssertionError):
    """The rehearsal did not end: stopped with SIGTERM (it then drops its scratch database)."""


@dataclass
class Installed:
    versions: dict[str, Path]
    deps: Path


@dataclass
class Source:
    project: Project
    database: dict[str, Any]
    installed: Installed
    before: dict[str, list[tuple[Any, ...]]]


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        pytest.skip(f"pip could not install {args[-1]}: {(lines or ['?'])[-1]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Each version in a directory of its own; their runtime dependencies once, without Django."""
    root = tmp_path_factory.mktemp("oauth_toolkit")
    started = time.perf_counter()
    versions = {}
    requirements: set[str] = set()
    for version in (OLD, BROKEN, FIXED):
        target = versions[version] = root / version
        _pip("--no-deps", "--target", str(target), f"django-oauth-toolkit=={version}")
        [info] = target.glob("django_oauth_toolkit-*.dist-info")
        for text in Distribution.at(info).requires or ():
            if Requirement(text).name.lower() != "django":
                requirements.add(text)
    deps = root / "deps"
    _pip("--target", str(deps), *sorted(requirements))
    assert not (deps / "django").exists(), "a dependency pulled Django in"
    took = time.perf_counter() - started
    print(f"\n[oauth-toolkit] install: {took:.1f} s; deps {sorted(requirements)}")
    return Installed(versions, deps)


def _env(installed: Installed, version: str, project: Project) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    path = [installed.versions[version], installed.deps, project.root]
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    return env


def _run(
    installed: Installed, version: str, project: Project, *args: str
) -> subprocess.CompletedProcess[str]:
    env = _env(installed, version, project)
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=HUNG_AFTER_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # unwinds: the scratch database is dropped
            out, err = proc.communicate(timeout=60)
            raise RehearsalHung(f"{version}: {args} still running after {HUNG_AFTER_S} s") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _snapshot(database: Mapping[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """What the source database holds that a rehearsal must not touch."""
    with psycopg.connect(dbname=database["NAME"], **PG) as conn:
        return {
            "migrations": conn.execute(
                "SELECT app, name, applied FROM django_migrations ORDER BY id"
            ).fetchall(),
            "tokens": conn.execute(f"SELECT * FROM {TOKENS} ORDER BY id").fetchall(),
            "columns": conn.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_name = %s ORDER BY ordinal_position",
                (TOKENS,),
            ).fetchall(),
        }


@pytest.fixture(scope="module")
def source(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A database migrated and filled by 2.4.0: a user, an application, three access tokens."""
    project = Project(tmp_path_factory.mktemp("oauth_project"))
    with scratch_database() as database:
        project.configure(["oauth2_provider"], database=database)
        settings = ["--settings", project.settings]
        done = _run(installed, OLD, project, "-m", "django", "migrate", "-v0", *settings)
        assert done.returncode == 0, done.stderr
        env = {"DJANGO_SETTINGS_MODULE": project.settings}
        filled = subprocess.run(
            [sys.executable, "-c", FILL],
            cwd=project.root,
            env={**_env(installed, OLD, project), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert filled.returncode == 0, filled.stderr
        before = _snapshot(database)
        assert len(before["tokens"]) == 3
        assert before["migrations"][-1][:2] == (
            "oauth2_provider",
            "0010_application_allowed_origins",
        )
        yield Source(project, database, installed, before)


def _rehearse(source: Source, version: str) -> tuple[int, dict[str, Any]]:
    started = time.perf_counter()
    args = ("-m", "django_rollout", "--settings", source.project.settings, *REHEARSE)
    result = _run(source.installed, version, source.project, *args)
    assert result.returncode in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    wall = time.perf_counter() - started
    print(f"\n[oauth-toolkit] rehearse {version}: {wall:.1f} s wall, {doc['timings_s']}")
    # The source is only read: the same applied migrations, rows and columns.
    assert _snapshot(source.database) == source.before
    with psycopg.connect(dbname="postgres", **PG) as conn:
        left = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (doc["scratch"]["name"],)
        ).fetchall()
    assert not left, "the scratch database was left behind"
    assert doc["unit"] == [
        ["oauth2_provider", "0011_refreshtoken_token_family"],
        ["oauth2_provider", MIGRATION],
    ]
    return result.returncode, doc


def _step(doc: dict[str, Any]) -> dict[str, Any]:
    [step] = [s for s in doc["steps"] if s["migration"] == MIGRATION]
    return step


def _finding(doc: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [f for f in doc["findings"] if f["rule"] == rule and f["migration"] == MIGRATION]
    return found


def test_3_0_0_fails_on_the_duplicated_empty_checksum(source: Source) -> None:
    status, doc = _rehearse(source, BROKEN)
    assert status == 1 and doc["verdict"] == "unsafe"
    assert doc["steps"][0]["status"] == "applied"  # 0011
    step = _step(doc)
    assert step["status"] == "failed"
    error = step["error"]
    assert error["sqlstate"] == "23505" and error["table"] == TOKENS
    assert error["message"].startswith("could not create unique index")
    assert "token_checksum" in error["constraint"]
    assert "DEFAULT '' NOT NULL UNIQUE" in error["statement"]
    d201 = _finding(doc, "D201")
    assert d201["confirmed"] is True and d201["severity"] == "error"
    assert "[23505]" in d201["observed_error"]


# 3.0.1's RunPython reads through Model._default_manager (not .using(alias)) after a schema
# change in the same transaction. The rehearsal once ran the migration on the scratch alias's
# connection while ``default`` reached the same database through a second one, which waited
# for the first's ACCESS EXCLUSIVE lock forever; now they are one connection, as under
# ``migrate``. A hang fails this test with RehearsalHung.
def test_3_0_1_applies_and_old_code_fails_on_not_null(source: Source) -> None:
    status, doc = _rehearse(source, FIXED)
    assert status == 1 and doc["verdict"] == "unsafe"
    step = _step(doc)
    assert step["status"] == "applied" and step["error"] is None
    # Distinct tokens, distinct checksums: the uniqueness goes in.
    assert _finding(doc, "D201")["confirmed"] is False
    # Added nullable, backfilled, then NOT NULL: the net effect is C101, on the last step.
    c101 = _finding(doc, "C101")
    assert c101["operation_index"] == 3 and c101["severity"] == "error"
    assert c101["confirmed"] is True and c101["code_version"] == "old"
    assert "[23502]" in c101["observed_error"]
    assert '"token_checksum"' in c101["observed_error"] and TOKENS in c101["observed_error"]
    assert doc["traffic"]["errors"]["old"] >= 1
