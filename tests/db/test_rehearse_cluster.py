"""`rehearse` with no PostgreSQL server configured: an ephemeral local cluster.

A project whose settings name SQLite, judged for a PostgreSQL production (``--vendor``),
rehearses on a throwaway cluster started from the machine's server binaries, and the
cluster is gone afterwards; ``--keep`` leaves it running and says how to remove it.
"""

from __future__ import annotations

import glob
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._project import (
    TOKEN,
    UNIQUE_BLANK,
    Project,
    judged_after_initial,
    migration,
    pg_url,
    scratch_database,
)

BASELINE = judged_after_initial("vault")


def _clusters() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "rollout_cluster_*")))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_checksum": migration(UNIQUE_BLANK, '[("vault", "0001_initial")]'),
        },
    )
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    project.configure(["vault"], database=sqlite, extra=BASELINE)
    before = _clusters()
    yield project
    assert _clusters() <= before, "an ephemeral cluster was left behind"


def _rehearse(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = project.run(
        "--settings", project.settings, "rehearse", "--rows", "5", "--format", "json", *args
    )
    assert result.status in (0, 1), result.stderr
    return result.status, result.json()


def test_postgresql_production_without_a_server_rehearses_on_an_ephemeral_cluster(
    project: Project,
) -> None:
    status, doc = _rehearse(project, "--vendor", "postgresql")
    scratch = doc["scratch"]
    assert scratch["vendor"] == "postgresql"
    assert scratch["server"].startswith("an ephemeral PostgreSQL ")
    assert scratch["left_running"] is None
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"
    # PostgreSQL's own text, not SQLite's "UNIQUE constraint failed".
    assert "could not create unique index" in step["error"]["message"]
    assert doc["verdict"] == "unsafe" and status == 1


def test_kept_cluster_runs_until_its_stop_command(project: Project) -> None:
    before = _clusters()
    status, doc = _rehearse(project, "--vendor", "postgresql", "--keep", "--no-traffic")
    command = doc["scratch"]["left_running"]
    [directory] = _clusters() - before
    assert directory in command
    subprocess.run(command, shell=True, check=True, capture_output=True)
    assert not Path(directory).exists()


def test_postgresql_copy_goes_to_an_ephemeral_cluster(project: Project) -> None:
    with scratch_database() as source:
        migrated = Project(project.root / "deployed")
        migrated.app("vault", {"0001_initial": migration(TOKEN)})
        migrated.configure(["vault"], database=source)
        result = migrated.manage("migrate")
        assert result.status == 0, result.stderr
        result = migrated.manage(
            "shell",
            "-c",
            "from django.db import connection; connection.cursor().execute("
            "\"INSERT INTO vault_token (name) VALUES ('a'), ('b')\")",
        )
        assert result.status == 0, result.stderr

        status, doc = _rehearse(project, "--from-database", pg_url(source), "--rows", "0")

    assert doc["scratch"]["server"].startswith("an ephemeral PostgreSQL ")
    assert doc["scratch"]["copy_method"] == "pg_dump | pg_restore"
    [step] = doc["steps"]
    assert step["status"] == "failed" and step["error"]["sqlstate"] == "23505"
