"""Ephemeral PostgreSQL clusters, started from the real server binaries of this machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from django_rollout.db import cluster as cluster_module
from django_rollout.db.cluster import Binaries, Cluster, ephemeral_cluster, find_binaries
from django_rollout.errors import DatabaseUnavailableError

BINARIES = find_binaries()
pytestmark = pytest.mark.skipif(BINARIES is None, reason="no PostgreSQL server binaries")


def connect(cluster: Cluster, name: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    s = cluster.settings(name)
    return psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True
    )


def alive(pid: int) -> bool:
    return cluster_module._alive(pid)


@pytest.fixture
def leftovers() -> Iterator[set[Path]]:
    """Yield the cluster directories that exist before the test; fail on any new one after."""
    before = set(Path(tempfile.gettempdir()).glob(f"{cluster_module.PREFIX}*"))
    yield before
    after = set(Path(tempfile.gettempdir()).glob(f"{cluster_module.PREFIX}*"))
    assert after - before == set()


@pytest.fixture
def fake_bindir() -> Iterator[Path]:
    """A folder for stand-in binaries that the unprivileged account may run, too."""
    directory = Path(tempfile.mkdtemp(prefix="rollout_fake_bin_"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_finds_binaries_and_their_major_version() -> None:
    assert BINARIES is not None
    for binary in (BINARIES.initdb, BINARIES.pg_ctl, BINARIES.postgres):
        assert binary.is_file()
    out = subprocess.run(
        [str(BINARIES.postgres), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"(PostgreSQL) {BINARIES.version}." in out


def test_cluster_serves_a_database_then_is_stopped_and_removed(leftovers: set[Path]) -> None:
    assert BINARIES is not None
    with ephemeral_cluster() as cluster:
        assert cluster.directory.name.startswith(cluster_module.PREFIX)
        assert cluster.version == BINARIES.version
        assert cluster.settings("x")["ENGINE"] == "django.db.backends.postgresql"
        with connect(cluster) as conn:
            conn.execute("CREATE DATABASE rollout_probe")
        with connect(cluster, "rollout_probe") as conn:
            conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
            conn.execute("INSERT INTO item VALUES (1, 'one')")
            assert conn.execute("SELECT name FROM item").fetchall() == [("one",)]
            # Unix socket only: a server already on the machine's TCP port is no clash.
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert alive(cluster.pid)
    assert not cluster.directory.exists()
    assert not alive(cluster.pid)


def test_cluster_is_removed_when_the_block_raises(leftovers: set[Path]) -> None:
    with pytest.raises(RuntimeError, match="boom"), ephemeral_cluster() as cluster:
        raise RuntimeError("boom")
    assert not cluster.directory.exists()
    assert not alive(cluster.pid)


def test_cluster_is_removed_on_ctrl_c(leftovers: set[Path]) -> None:
    # Ctrl-C signals the terminal's whole process group: run one in its own.
    code = (
        "import time\n"
        "from django_rollout.db.cluster import ephemeral_cluster\n"
        "with ephemeral_cluster() as c:\n"
        "    print(c.directory, c.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert child.stdout is not None
    directory, pid = child.stdout.readline().split()
    os.killpg(child.pid, signal.SIGINT)
    child.wait(timeout=30)
    assert child.returncode != 0
    assert not Path(directory).exists()
    assert not alive(int(pid))


def test_keep_leaves_the_cluster_running(leftovers: set[Path]) -> None:
    with ephemeral_cluster(keep=True) as cluster:
        pass
    try:
        assert alive(cluster.pid)
        with connect(cluster) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert "stop -m immediate" in cluster.stop_command()
    finally:
        cluster.remove()
    assert not cluster.directory.exists()
    assert not alive(cluster.pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="the account is chosen only as root")
def test_runs_as_nobody_when_there_is_no_postgres_user(
    monkeypatch: pytest.MonkeyPatch, leftovers: set[Path]
) -> None:
    monkeypatch.setattr(cluster_module, "ACCOUNTS", ("rollout_no_such_user", "nobody"))
    with ephemeral_cluster() as cluster:
        assert cluster.account is not None and cluster.account.name == "nobody"
        assert cluster.directory.stat().st_uid == cluster.account.uid
        with connect(cluster) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not cluster.directory.exists()
    assert not alive(cluster.pid)


def test_missing_binary_raises_one_line(leftovers: set[Path]) -> None:
    missing = Path("/nonexistent/bin")
    binaries = Binaries(
        initdb=missing / "initdb",
        pg_ctl=missing / "pg_ctl",
        postgres=missing / "postgres",
        version=15,
    )
    with pytest.raises(DatabaseUnavailableError) as caught, ephemeral_cluster(binaries=binaries):
        pass
    message = str(caught.value)
    assert "/nonexistent/bin/initdb" in message and "\n" not in message


def test_failing_initdb_raises_its_error_line(fake_bindir: Path, leftovers: set[Path]) -> None:
    assert BINARIES is not None
    initdb = script(fake_bindir / "initdb", 'echo "initdb: error: out of disk" >&2\nexit 1\n')
    binaries = Binaries(initdb, BINARIES.pg_ctl, BINARIES.postgres, BINARIES.version)
    # Nothing is left behind on a failed start, even when asked to keep the cluster.
    with (
        pytest.raises(DatabaseUnavailableError, match=r"^initdb failed: out of disk$"),
        ephemeral_cluster(keep=True, binaries=binaries),
    ):
        pass


def test_server_that_does_not_start_raises_the_log_line(
    fake_bindir: Path, leftovers: set[Path]
) -> None:
    assert BINARIES is not None
    # pg_ctl writes the server's complaint into the -l log file and fails.
    pg_ctl = script(
        fake_bindir / "pg_ctl",
        'while [ $# -gt 0 ]; do [ "$1" = -l ] && { shift; echo "LOG:  starting" >> "$1";'
        ' echo "FATAL:  could not map shared memory" >> "$1";'
        ' echo "LOG:  database system is shut down" >> "$1"; }; shift; done\nexit 1\n',
    )
    binaries = Binaries(BINARIES.initdb, pg_ctl, BINARIES.postgres, BINARIES.version)
    with pytest.raises(DatabaseUnavailableError) as caught, ephemeral_cluster(binaries=binaries):
        pass
    message = str(caught.value)
    assert message.startswith("the PostgreSQL server did not start: could not map shared memory")
    assert "\n" not in message
