"""Throwaway Django projects on disk, and running the console script against them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}

SETTINGS = """\
SECRET_KEY = "test"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_rollout",
{apps}]
DATABASES = {{"default": {database}}}
{extra}
"""

# A small table, and django-oauth-toolkit 3.0.0's column on it: unique and blank, so every
# existing row gets '' and the unique index fails.
TOKEN = """\
migrations.CreateModel(
    "Token",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.CharField(max_length=40)),
    ],
),
"""
UNIQUE_BLANK = (
    'migrations.AddField("token", "checksum", models.CharField(max_length=64, unique=True,'
    ' blank=True, default=""))'
)

HEADER = "from django.db import migrations, models\nimport django.db.models.deletion\n\n"


def pg_settings(name: str = "rollout_never_created") -> dict[str, Any]:
    """A ``DATABASES`` entry on the test server. A rehearsal makes its scratch database
    beside ``name``, which need not exist."""
    upper = {k.upper(): v for k, v in PG.items()}
    return {"ENGINE": "django.db.backends.postgresql", "NAME": name, **upper}


def judged_after_initial(app: str) -> str:
    """``ROLLOUT`` settings whose baseline leaves only ``app``'s migrations after its
    ``0001_initial`` to judge and to rehearse."""
    return (
        'ROLLOUT = {"start_after": {"contenttypes": "0002_remove_content_type_name",'
        f' "auth": "0012_alter_user_first_name_max_length", "{app}": "0001_initial"}}}}'
    )


def migration(operations: str, dependencies: str = "[]", extra: str = "") -> str:
    """Return the text of a migration module."""
    body = textwrap.indent(textwrap.dedent(operations).strip(), " " * 8)
    return (
        HEADER
        + "class Migration(migrations.Migration):\n"
        + f"    dependencies = {dependencies}\n"
        + (textwrap.indent(textwrap.dedent(extra).strip(), "    ") + "\n" if extra else "")
        + "    operations = [\n"
        + body
        + "\n    ]\n"
    )


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


@dataclass
class Project:
    root: Path
    settings: str = "proj_settings"

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def app(self, label: str, migrations: Mapping[str, str], models: str = "") -> None:
        self.write(f"{label}/__init__.py", "")
        self.write(f"{label}/models.py", "from django.db import models\n" + models)
        self.write(f"{label}/migrations/__init__.py", "")
        for name, text in migrations.items():
            self.write(f"{label}/migrations/{name}.py", text)

    def configure(
        self, apps: list[str], database: Mapping[str, Any] | None = None, extra: str = ""
    ) -> None:
        db = dict(
            database
            or {"ENGINE": "django.db.backends.sqlite3", "NAME": str(self.root / "db.sqlite3")}
        )
        self.write(
            f"{self.settings}.py",
            SETTINGS.format(
                apps="".join(f"    {a!r},\n" for a in apps), database=repr(db), extra=extra
            ),
        )

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Result:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("DJANGO_SETTINGS_MODULE", None)
        proc = subprocess.run(
            [sys.executable, "-m", "django_rollout", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def check(self, *args: str) -> Result:
        return self.run("--settings", self.settings, "check", *args)

    def manage(self, *args: str) -> Result:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from django.core.management import "
                "execute_from_command_line; execute_from_command_line(sys.argv)",
                *args,
                "--settings",
                self.settings,
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(self.root)},
            timeout=120,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@contextmanager
def scratch_database() -> Iterator[dict[str, Any]]:
    """Create a PostgreSQL database with a unique name; drop it afterwards."""
    import psycopg

    name = f"rollout_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": PG["user"],
            "HOST": PG["host"],
            "PORT": PG["port"],
        }
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(db: Mapping[str, Any]) -> str:
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@contextmanager
def extra_aliases(pg_alias: str, lite_alias: str) -> Iterator[None]:
    """Add a PostgreSQL alias (database ``test``) and an in-memory SQLite one to Django's
    connections for the duration; close and remove them afterwards."""
    from django.db import connections

    pg = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test",
        "USER": PG["user"],
        "HOST": PG["host"],
        "PORT": PG["port"],
    }
    lite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    # Filled with Django's defaults (OPTIONS, TIME_ZONE, ...), as settings.DATABASES would be.
    filled = connections.configure_settings({"default": {}, pg_alias: pg, lite_alias: lite})
    connections.settings.update({pg_alias: filled[pg_alias], lite_alias: filled[lite_alias]})
    try:
        yield
    finally:
        for alias in (pg_alias, lite_alias):
            connections[alias].close()
            del connections[alias]
            connections.settings.pop(alias)
