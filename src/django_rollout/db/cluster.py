"""An ephemeral local PostgreSQL cluster, for rehearsals when no server is configured.

Find the server binaries on the machine (``find_binaries``), create a cluster with ``initdb``
in a fresh temporary directory, start it with ``pg_ctl`` and yield a ``Cluster`` whose
``settings()`` is a Django ``DATABASES`` entry (``ephemeral_cluster``). When the ``with``
block ends the server is stopped and the directory removed: on success, on an error and on
Ctrl-C (``KeyboardInterrupt``; SIGTERM is turned into one while the cluster lives).
``keep=True`` leaves it running and in place; ``Cluster.remove()`` or the shell line of
``Cluster.stop_command()`` gets rid of it later.

The server listens on a Unix socket in the temporary directory and on no TCP port, so it
never clashes with a server already on the machine, and nobody else can reach it: the
directory is mode 0700 and the cluster trusts every local connection as superuser. Clients
reach it with ``HOST=<directory>`` (libpq, psycopg, ``pg_dump`` and ``pg_restore`` alike);
``PORT`` only names the socket file.

``initdb`` and ``postgres`` refuse to run as root. When this process is root they run as the
system user ``postgres`` (or ``nobody`` when there is none), and the directory belongs to
that user; root still connects, since it bypasses file permissions.

The cluster is built for speed, not durability: no fsync, no full-page writes, no
synchronous commit. A crash loses it, which is what a throwaway cluster is for.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from django_rollout.errors import DatabaseUnavailableError

PREFIX = "rollout_cluster_"
SUPERUSER = "postgres"
# Only names the socket file (.s.PGSQL.5432): no TCP port is opened.
PORT = 5432
# Where distributions install server binaries that are not on PATH, searched in this order:
# Debian/Ubuntu (one folder per major version), PGDG on Red Hat, a source build.
SEARCH_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")
# Unprivileged accounts to run the server as when this process is root, best first.
ACCOUNTS = ("postgres", "nobody")
# sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107
START_TIMEOUT = 60
COMMAND_TIMEOUT = 120

# Appended to postgresql.conf rather than passed with ``pg_ctl -o``: pg_ctl hands -o to a
# shell, and a kept cluster restarted with a plain ``pg_ctl start`` keeps these settings.
SERVER_SETTINGS = {
    "listen_addresses": "",
    "unix_socket_permissions": "0700",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
}


@dataclass(frozen=True)
class Binaries:
    """The server binaries of one PostgreSQL installation and its major version."""

    initdb: Path
    pg_ctl: Path
    postgres: Path
    version: int


@dataclass(frozen=True)
class Account:
    """The unprivileged user that runs the server when this process is root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Cluster:
    """A running ephemeral cluster: where it lives and how to reach it."""

    directory: Path
    socket_dir: Path
    port: int
    version: int
    pid: int
    binaries: Binaries = field(repr=False)
    account: Account | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def settings(self, name: str = "postgres") -> dict[str, Any]:
        """Return a Django ``DATABASES`` entry for database ``name`` of this cluster."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": SUPERUSER,
            "PASSWORD": "",
            "HOST": str(self.socket_dir),
            "PORT": str(self.port),
        }

    def remove(self) -> None:
        """Stop the server and delete its directory (for a cluster kept with ``keep=True``)."""
        _teardown(self.directory, self.binaries, self.account)

    def stop_command(self) -> str:
        """Return a shell line that stops the server and deletes its directory."""
        stop = shlex.join(
            [str(self.binaries.pg_ctl), "stop", "-m", "immediate", "-D", str(self.data_dir)]
        )
        if self.account is not None:
            stop = shlex.join(["su", "-s", "/bin/sh", self.account.name, "-c", stop])
        return f"{stop}; rm -rf {shlex.quote(str(self.directory))}"


def find_binaries() -> Binaries | None:
    """Return the server binaries found on PATH, else the newest installed ones, else None."""
    for bindir in _candidate_dirs():
        found = _binaries_in(bindir)
        if found is not None:
            return found
    return None


@contextmanager
def ephemeral_cluster(*, keep: bool = False, binaries: Binaries | None = None) -> Iterator[Cluster]:
    """Start a throwaway cluster from ``binaries`` (found when omitted); remove it after.

    Raise ``DatabaseUnavailableError`` with one line when it cannot start; nothing is left
    behind then, whatever ``keep`` says.
    """
    if binaries is None:
        binaries = find_binaries()
    if binaries is None:
        raise DatabaseUnavailableError(
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
            + ", ".join(SEARCH_GLOBS)
        )
    account = _unprivileged_account()
    with terminate_as_interrupt():
        directory = Path(tempfile.mkdtemp(prefix=PREFIX))
        started = False
        try:
            cluster = _start(directory, binaries, account)
            started = True
            yield cluster
        finally:
            if not (keep and started):
                _teardown(directory, binaries, account)


# -- finding the binaries --------------------------------------------------------------------


def _candidate_dirs() -> Iterator[Path]:
    on_path = shutil.which("initdb")
    if on_path is not None:
        # A symlink on PATH (/usr/local/bin/initdb) may lead to the folder that holds the
        # rest of the installation.
        yield Path(on_path).parent
        yield Path(on_path).resolve().parent
    for pattern in SEARCH_GLOBS:
        yield from sorted(Path("/").glob(pattern.lstrip("/")), key=_version_key, reverse=True)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Order /usr/lib/postgresql/15/bin and /usr/pgsql-9.6/bin by the version they name."""
    return tuple(int(n) for n in re.findall(r"\d+", str(bindir)))


def _binaries_in(bindir: Path) -> Binaries | None:
    # All three from one folder: pg_ctl runs the postgres beside it, and a data directory
    # made by one major version does not start under another.
    paths = [bindir / name for name in ("initdb", "pg_ctl", "postgres")]
    if not all(p.is_file() and os.access(p, os.X_OK) for p in paths):
        return None
    version = _major_version(paths[1])
    if version is None:
        return None
    return Binaries(initdb=paths[0], pg_ctl=paths[1], postgres=paths[2], version=version)


def _major_version(pg_ctl: Path) -> int | None:
    """Read the major version from ``pg_ctl --version`` ("pg_ctl (PostgreSQL) 15.20 ...")."""
    try:
        out = subprocess.run(
            [str(pg_ctl), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


# -- starting and stopping -------------------------------------------------------------------


def _unprivileged_account() -> Account | None:
    """Return the account to run the server as, or None when this process is not root."""
    if os.geteuid() != 0:
        return None
    for name in ACCOUNTS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    raise DatabaseUnavailableError(
        "PostgreSQL does not run as root, and there is no 'postgres' or 'nobody' user to run it"
    )


def _start(directory: Path, binaries: Binaries, account: Account | None) -> Cluster:
    socket = directory / f".s.PGSQL.{PORT}"
    if len(os.fsencode(socket)) > MAX_SOCKET_PATH:
        raise DatabaseUnavailableError(
            f"the temporary directory {directory} is too long a path for a Unix socket;"
            " set TMPDIR to a shorter one"
        )
    if account is not None:
        os.chown(directory, account.uid, account.gid)
    data = directory / "data"
    initdb = _run(
        binaries.initdb,
        ["-D", str(data), "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8"]
        + ["--locale=C"],
        directory,
        account,
    )
    if initdb.returncode != 0:
        raise DatabaseUnavailableError(f"initdb failed: {_reason(initdb.stdout)}")
    _configure(data, directory)
    log = directory / "server.log"
    start = _run(
        binaries.pg_ctl,
        ["start", "-w", "-t", str(START_TIMEOUT), "-D", str(data), "-l", str(log)],
        directory,
        account,
    )
    pid = _postmaster_pid(data)
    if start.returncode != 0 or pid is None:
        text = log.read_text(errors="replace") if log.is_file() else start.stdout
        raise DatabaseUnavailableError(
            f"the PostgreSQL server did not start: {_reason(text)} (log: {log})"
        )
    return Cluster(
        directory=directory,
        socket_dir=directory,
        port=PORT,
        version=binaries.version,
        pid=pid,
        binaries=binaries,
        account=account,
    )


def _configure(data: Path, directory: Path) -> None:
    settings = {**SERVER_SETTINGS, "port": str(PORT), "unix_socket_directories": str(directory)}
    lines = [f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in settings.items()]
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# django-rollout: an ephemeral cluster\n" + "\n".join(lines) + "\n")


def _teardown(directory: Path, binaries: Binaries, account: Account | None) -> None:
    """Stop the server if it runs, then delete the directory. Never raise."""
    data = directory / "data"
    pid = _postmaster_pid(data)
    if pid is not None:
        # Immediate: nothing in a throwaway cluster is worth a checkpoint.
        with suppress(DatabaseUnavailableError):
            _run(binaries.pg_ctl, ["stop", "-m", "immediate", "-w", "-D", str(data)], None, account)
        if _alive(pid):
            # pg_ctl could not stop it (a binary gone, a hung server): the data directory is
            # about to vanish under it, so end it for sure.
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def _run(
    binary: Path, args: Sequence[str], cwd: Path | None, account: Account | None
) -> subprocess.CompletedProcess[str]:
    """Run a server binary as ``account``, out of the terminal's reach; raise one line."""
    try:
        return subprocess.run(
            [str(binary), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT,
            env=_environment(os.environ),
            # The account may not enter this process's working directory; initdb and
            # pg_ctl look up their own path from it.
            cwd=cwd or "/",
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,
            # Ctrl-C at the terminal reaches the whole foreground process group: keep the
            # server (started by pg_ctl) out of it, so the teardown finds it running and
            # stops it in order.
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        raise DatabaseUnavailableError(
            f"{binary.name} did not finish in {COMMAND_TIMEOUT} s"
        ) from None
    except OSError as exc:
        raise DatabaseUnavailableError(
            f"cannot run {binary}: {exc.strerror or type(exc).__name__}"
        ) from None


def _environment(environ: Mapping[str, str]) -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS...) of the user's shell must not steer the
    # cluster. English messages make the one-line errors readable to every user; a fixed TZ
    # spares initdb its scan of the zoneinfo files.
    env = {k: v for k, v in environ.items() if not k.startswith("PG") and not k.startswith("LC_")}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    return env


def _postmaster_pid(data: Path) -> int | None:
    """Return the server's pid from the first line of postmaster.pid, if there is one."""
    try:
        first = (data / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if first.strip().isdigit() else None


def _alive(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _reason(text: str) -> str:
    """Return the line of a log that says why it failed: the last FATAL/PANIC/error line,
    else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.search(r"\b(?:FATAL|PANIC|ERROR|error):\s*(.*)", line)
        if match:
            return match.group(1)
    return lines[-1] if lines else "no output"


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the block, so that a killed run unwinds and
    removes what it made: a cluster, a scratch database (main thread only: signals are
    delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
