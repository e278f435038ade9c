"""`rehearse --traffic interleaved`: the real application starts between migrations.

The project's ``ready()`` reads a column that its last migration adds, as code does once it
is deployed. A server that starts before ``migrate`` has finished (``migrate`` on start,
or a second server starting meanwhile) cannot start: the rehearsal shows it with the
database's own error, and confirms A601, the rule about queries while Django starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._project import Project, judged_after_initial, migration, pg_settings

SETTING = """\
migrations.CreateModel(
    "Setting",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("key", models.CharField(max_length=40, unique=True)),
    ],
),
"""
SCOPE = 'migrations.AddField("setting", "scope", models.CharField(max_length=20, null=True))'
MODELS = """
class Setting(models.Model):
    key = models.CharField(max_length=40, unique=True)
    scope = models.CharField(max_length=20, null=True)
"""
APPS = """\
from django.apps import AppConfig


class ConfConfig(AppConfig):
    name = "conf"

    def ready(self):
        from .models import Setting

        # Unguarded, as the release being deployed reads its settings while it starts.
        list(Setting.objects.values_list("key", "scope"))
"""


def _project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.app(
        "conf",
        {
            "0001_initial": migration(SETTING),
            "0002_scope": migration(SCOPE, '[("conf", "0001_initial")]'),
        },
        models=MODELS,
    )
    project.write("conf/apps.py", APPS)
    project.configure(
        ["conf"],
        database=pg_settings(),
        extra=judged_after_initial("conf"),
    )
    return project


def _rehearse(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = project.run(
        "--settings", project.settings, "rehearse", "--rows", "5", "--format", "json", *args
    )
    assert result.status in (0, 1), result.stderr
    return result.status, result.json()


def test_application_started_before_the_migration_cannot_start(tmp_path: Path) -> None:
    status, doc = _rehearse(_project(tmp_path), "--traffic", "interleaved")

    [a601] = [f for f in doc["findings"] if f["rule"] == "A601"]
    assert a601["confirmed"] is True and a601["code_version"] == "new"
    assert a601["observed_error"].startswith("[42703]")
    assert "column conf_setting.scope does not exist" in a601["observed_error"].replace('"', "")
    # Explained by A601, so no rule-null finding; the migration itself applies.
    assert not [f for f in doc["findings"] if f["rule"] is None]
    assert [s["status"] for s in doc["steps"]] == ["applied"]
    assert doc["traffic"]["actions"]["new"] > 0  # the round after the last migration ran
    assert status == 0 or doc["verdict"] == "unsafe"


def test_without_interleaving_the_application_never_starts(tmp_path: Path) -> None:
    status, doc = _rehearse(_project(tmp_path))
    [a601] = [f for f in doc["findings"] if f["rule"] == "A601"]
    assert a601["confirmed"] is False


def test_interleaving_needs_a_settings_module(tmp_path: Path) -> None:
    import pytest

    from django_rollout import api
    from django_rollout.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="needs a settings module"):
        api.rehearse(api.RehearseOptions(interleaved=True))


OTHER = """\
migrations.CreateModel("Other", [("id", models.BigAutoField(primary_key=True))]),
"""


def test_requests_failing_until_a_migration_ran_are_one_warning_at_that_migration(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path)
    project.app(
        "conf",
        {
            "0001_initial": migration(SETTING),
            "0002_other": migration(OTHER, '[("conf", "0001_initial")]'),
            "0003_scope": migration(SCOPE, '[("conf", "0002_other")]'),
        },
        models=MODELS + "\n\nclass Other(models.Model):\n    pass\n",
    )
    (tmp_path / "conf/migrations/0002_scope.py").unlink()
    project.write(
        "conf/apps.py",
        "from django.apps import AppConfig\n\n\nclass ConfConfig(AppConfig):\n    name = 'conf'\n",
    )

    status, doc = _rehearse(project, "--traffic", "interleaved")

    unexplained = [f for f in doc["findings"] if f["rule"] is None]
    [scope] = unexplained  # started before 0002 and before 0003: the same error, once
    assert scope["migration"] == "0003_scope" and scope["severity"] == "warning"
    assert "started before `0003_scope` ran (as at 1 earlier start(s))" in scope["message"]
    assert scope["observed_error"].startswith("[42703]") and "scope" in scope["observed_error"]
    assert scope["code_version"] == "new"
