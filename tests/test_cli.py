"""The console script end to end: S0 sources, filters, formats, suppressions, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from _project import PG, Project, migration, pg_url, scratch_database

INITIAL = migration(
    """
    migrations.CreateModel(
        name="Item",
        fields=[
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
            ("notes", models.TextField(null=True)),
        ],
    ),
    """,
    extra="initial = True",
)
ADD_WEIGHT = migration(
    'migrations.AddField("item", "weight", models.IntegerField(default=0)),',
    '[("inventory", "0001_initial")]',
)
ADD_STOCK = migration(
    'migrations.AddField("item", "stock", models.IntegerField(db_default=0, default=0)),',
    '[("inventory", "0002_item_weight")]',
)
MODELS = """
class Item(models.Model):
    name = models.CharField(max_length=100)
    notes = models.TextField(null=True)
    weight = models.IntegerField(default=0)
    stock = models.IntegerField(db_default=0, default=0)
"""


def inventory(root: Path, database: dict | None = None, extra: str = "", upto: int = 3) -> Project:
    project = Project(root)
    history = {
        "0001_initial": INITIAL,
        "0002_item_weight": ADD_WEIGHT,
        "0003_item_stock": ADD_STOCK,
    }
    project.app("inventory", dict(list(history.items())[:upto]), MODELS)
    project.configure(["inventory"], database, extra)
    return project


def rules_of(doc: dict, app: str | None = "inventory") -> list[tuple[str, str]]:
    """Return (migration, rule) of the error and warning findings of an app."""
    return [
        (f["migration"], f["rule"])
        for f in doc["findings"]
        if (app is None or f["app_label"] == app) and f["severity"] != "info"
    ]


def test_check_reports_hazard_with_path_line_and_exits_1(tmp_path: Path) -> None:
    result = inventory(tmp_path).check("inventory", "--no-color")
    assert result.status == 1, result.stderr
    assert "inventory/migrations/0002_item_weight.py:" in result.stdout
    assert "C101" in result.stdout
    assert "inventory.0002_item_weight" in result.stdout
    # The db_default twin is silent for C101.
    assert "0003_item_stock.py:7  error" not in result.stdout


def test_json_report_is_the_envelope(tmp_path: Path) -> None:
    doc = inventory(tmp_path).check("--format", "json").json()
    assert doc["schema_version"] == 1
    assert doc["command"] == "check"
    assert doc["s0_source"] == "the state just before each migration"
    assert ["inventory", "0002_item_weight"] in doc["unit"]
    finding = next(f for f in doc["findings"] if f["rule"] == "C101")
    for key in (
        "rule",
        "name",
        "severity",
        "app_label",
        "migration",
        "operation_index",
        "operation",
        "path",
        "line",
        "message",
        "help",
    ):
        assert key in finding
    assert finding["operation_index"] == 0
    assert finding["operation"] == "AddField"
    assert finding["line"] == 7  # the AddField line in the migration file
    assert "`inventory_item`.`weight`" in finding["message"]


def test_explain_fills_the_recipe_with_the_users_names(tmp_path: Path) -> None:
    out = inventory(tmp_path).check("inventory", "--explain", "--no-color").stdout
    assert "1. This release: add the column" in out
    assert 'migrations.AddField("item", "weight"' in out


def test_safe_history_exits_0(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    result = project.check("inventory", "0003", "--format", "json")
    assert result.status == 0, result.stdout
    assert result.json()["findings"] == []


def test_fail_on_info_makes_any_finding_fail(tmp_path: Path) -> None:
    project = inventory(tmp_path, upto=1)
    assert project.check("--fail-on", "info").status in (0, 1)
    assert project.check("--fail-on", "nonsense").status == 2


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def _git_project(root: Path) -> Project:
    project = inventory(root, upto=1)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "release 1")
    inventory(root)  # the new release adds 0002 and 0003
    return project


def test_since_git_ref_judges_only_the_migrations_added_since(tmp_path: Path) -> None:
    project = _git_project(tmp_path)
    doc = project.check("--since", "HEAD", "--format", "json").json()
    assert doc["s0_source"] == "git:HEAD"
    unit = [tuple(k) for k in doc["unit"]]
    assert unit == [("inventory", "0002_item_weight"), ("inventory", "0003_item_stock")]
    assert rules_of(doc) == [("0002_item_weight", "C101")]


def test_since_unknown_ref_is_one_line_and_exit_2(tmp_path: Path) -> None:
    project = _git_project(tmp_path)
    result = project.check("--since", "no-such-ref")
    assert result.status == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown git ref 'no-such-ref'" in result.stderr


def test_since_in_a_shallow_clone_says_so(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    _git_project(origin)
    _git(origin, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(origin, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "release 2")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(clone))
    result = Project(clone).check("--since", "HEAD~1")
    assert result.status == 2
    assert "shallow clone" in result.stderr


def test_database_s0_judges_the_unapplied_migrations(tmp_path: Path) -> None:
    with scratch_database() as db:
        project = inventory(tmp_path, db)
        assert project.manage("migrate").status == 0
        assert project.manage("migrate", "inventory", "0001").status == 0
        with psycopg.connect(dbname=db["NAME"], **PG) as conn:
            conn.execute("INSERT INTO inventory_item (name) SELECT 'x' FROM generate_series(1, 25)")
            conn.execute("ANALYZE inventory_item")
        doc = project.check("--database", "default", "--format", "json").json()
        assert doc["s0_source"] == "database:default"
        assert [tuple(k) for k in doc["unit"]] == [
            ("inventory", "0002_item_weight"),
            ("inventory", "0003_item_stock"),
        ]
        assert rules_of(doc) == [("0002_item_weight", "C101")]
        assert doc["row_counts"] is True

        by_url = project.check("--database", pg_url(db), "--format", "json").json()
        assert rules_of(by_url) == rules_of(doc)
        assert by_url["unit"] == doc["unit"]


def test_snapshot_round_trip_gives_the_same_verdict_as_the_database(tmp_path: Path) -> None:
    with scratch_database() as db:
        project = inventory(tmp_path, db)
        assert project.manage("migrate").status == 0
        assert project.manage("migrate", "inventory", "0001").status == 0
        with psycopg.connect(dbname=db["NAME"], **PG) as conn:
            conn.execute("INSERT INTO inventory_item (name) SELECT 'x' FROM generate_series(1, 40)")
            conn.execute("ANALYZE inventory_item")
        snap = project.run("--settings", project.settings, "snapshot", "-o", "deployed.json")
        assert snap.status == 0, snap.stderr
        doc = json.loads((tmp_path / "deployed.json").read_text())
        assert doc["format"] == "django-rollout-snapshot"
        assert ["inventory", "0001_initial"] in doc["applied"]
        assert doc["tables"]["inventory_item"] == 40
        from_db = project.check("--database", "default", "--format", "json").json()
    from_file = project.check("--applied-from", "deployed.json", "--format", "json").json()
    assert from_file["s0_source"] == "snapshot:deployed.json"
    assert from_file["unit"] == from_db["unit"]
    assert rules_of(from_file) == rules_of(from_db)


def test_s0_with_nothing_applied_is_refused(tmp_path: Path) -> None:
    with scratch_database() as db:
        project = inventory(tmp_path, db)
        with psycopg.connect(dbname=db["NAME"], **PG) as conn:
            conn.execute(
                "CREATE TABLE django_migrations (id serial primary key, app varchar(255),"
                " name varchar(255), applied timestamptz)"
            )
        result = project.check("--database", "default")
    assert result.status == 2
    assert "has no migration of this project applied" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--applied-from", "missing.json"), "--applied-from missing.json"),
        (("--applied-from", "proj_settings.py"), "not a django-rollout snapshot"),
        (("--database", "postgresql://postgres@127.0.0.1:1/nothing"), "cannot connect"),
        (("--database", "nosuchalias"), "no such database alias"),
        (("nosuchapp",), "unknown app label 'nosuchapp'"),
        (("inventory", "9999"), "no migration matching '9999'"),
        (("--since", "HEAD", "--database", "default"), "use only one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = inventory(tmp_path).check(*args)
    assert result.status == 2, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_database_that_is_not_a_django_database(tmp_path: Path) -> None:
    with scratch_database() as db:
        result = inventory(tmp_path, db).check("--database", pg_url(db))
    assert result.status == 2
    assert "has no django_migrations table" in result.stderr


def test_syntax_error_in_a_migration_names_file_and_line(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write(
        "inventory/migrations/0004_broken.py",
        "from django.db import migrations\n\nclass Migration(:\n",
    )
    result = project.check()
    assert result.status == 2
    assert "0004_broken.py:3: syntax error in migration" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_dependency_is_one_line(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write("inventory/migrations/0004_x.py", migration("", '[("inventory", "0099_gone")]'))
    result = project.check()
    assert result.status == 2
    assert "missing dependency" in result.stderr and "0099_gone" in result.stderr


def test_circular_dependency_is_one_line(tmp_path: Path) -> None:
    project = inventory(tmp_path, upto=1)
    project.write("inventory/migrations/0002_a.py", migration("", '[("inventory", "0003_b")]'))
    project.write("inventory/migrations/0003_b.py", migration("", '[("inventory", "0002_a")]'))
    result = project.check()
    assert result.status == 2
    assert "circular dependency" in result.stderr


def test_settings_that_fail_to_import(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write("broken_settings.py", "import does_not_exist\n")
    result = project.run("--settings", "broken_settings", "check")
    assert result.status == 2
    assert "cannot import settings 'broken_settings'" in result.stderr
    missing = project.run("--settings", "nowhere.settings", "check")
    assert missing.status == 2 and "cannot import settings" in missing.stderr


def test_no_settings_at_all(tmp_path: Path) -> None:
    result = inventory(tmp_path).run("check")
    assert result.status == 2
    assert "no settings" in result.stderr


def test_settings_from_the_environment(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("django-rollout")), "check", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": project.settings},
    )
    assert result.returncode == 1, result.stderr
    assert ("0002_item_weight", "C101") in rules_of(json.loads(result.stdout))


def test_manage_py_rollout_gives_the_same_report(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    via_manage = project.manage("rollout", "check", "--format", "json")
    via_script = project.check("--format", "json")
    assert via_manage.status == via_script.status == 1, via_manage.stderr
    assert rules_of(json.loads(via_manage.stdout)) == rules_of(via_script.json())


def test_migration_suppression_with_reason(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write(
        "inventory/migrations/0002_item_weight.py",
        ADD_WEIGHT.replace(
            "    operations = [",
            '    rollout_ignore = {"C101": "no server inserts items during deploys"}\n'
            "    operations = [",
        ),
    )
    doc = project.check("inventory", "--format", "json").json()
    assert rules_of(doc) == []
    assert doc["suppressed"][0]["rule"] == "C101"
    assert doc["suppressed"][0]["reason"] == "no server inserts items during deploys"


def test_config_suppression_needs_a_reason(tmp_path: Path) -> None:
    project = inventory(tmp_path, extra='ROLLOUT = {"ignore": {"C101": ""}}')
    result = project.check()
    assert result.status == 2
    assert "needs a reason" in result.stderr


def test_config_suppression_scoped_to_a_migration(tmp_path: Path) -> None:
    extra = (
        'ROLLOUT = {"ignore": [{"rule": "C101", "app_label": "inventory",'
        ' "migration": "0002_item_weight", "reason": "table is empty in every environment"}]}'
    )
    doc = inventory(tmp_path, extra=extra).check("inventory", "--format", "json").json()
    assert rules_of(doc) == []
    assert doc["suppressed"][0]["suppressed_by"] == "settings.ROLLOUT"


def test_unused_suppression_is_reported(tmp_path: Path) -> None:
    extra = 'ROLLOUT = {"ignore": {"C105": "we never drop tables"}}'
    doc = inventory(tmp_path, extra=extra).check("--format", "json").json()
    unused = [f for f in doc["findings"] if f["rule"] == "M408"]
    assert len(unused) == 1
    assert "C105" in unused[0]["message"]


def test_severity_override_and_pyproject_config(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write("pyproject.toml", '[tool.django-rollout]\nseverity = { C101 = "warning" }\n')
    result = project.check("inventory", "--format", "json")
    assert result.status == 0  # warning is below the default --fail-on error
    assert [f["severity"] for f in result.json()["findings"] if f["rule"] == "C101"] == ["warning"]
    assert project.check("inventory", "--fail-on", "warning").status == 1


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    result = inventory(tmp_path, extra='ROLLOUT = {"ignores": {}}').check()
    assert result.status == 2
    assert "unknown key(s) ignores" in result.stderr


def test_start_after_baseline_skips_old_history(tmp_path: Path) -> None:
    extra = 'ROLLOUT = {"start_after": {"inventory": "0002_item_weight"}}'
    doc = inventory(tmp_path, extra=extra).check("--format", "json").json()
    assert rules_of(doc) == []
    assert ["inventory", "0003_item_stock"] in doc["unit"]
    bad = inventory(tmp_path, extra='ROLLOUT = {"start_after": {"inventory": "0042_x"}}').check()
    assert bad.status == 2 and "start_after" in bad.stderr


def test_excluded_apps_are_not_judged(tmp_path: Path) -> None:
    doc = (
        inventory(tmp_path, extra='ROLLOUT = {"exclude_apps": ["inventory"]}')
        .check("--format", "json")
        .json()
    )
    assert rules_of(doc) == []


def test_app_filter_does_not_change_s0(tmp_path: Path) -> None:
    project = _git_project(tmp_path)
    whole = project.check("--since", "HEAD", "--format", "json").json()
    filtered = project.check("inventory", "--since", "HEAD", "--format", "json").json()
    assert rules_of(filtered) == rules_of(whole)


def test_sarif_output(tmp_path: Path) -> None:
    doc = inventory(tmp_path).check("--format", "sarif").json()
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert "C101" in ids
    result = next(r for r in run["results"] if r["ruleId"] == "C101")
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "inventory/migrations/0002_item_weight.py"
    assert location["region"]["startLine"] == 7


def test_github_annotations(tmp_path: Path) -> None:
    out = inventory(tmp_path).check("inventory", "--format", "github").stdout
    line = next(x for x in out.splitlines() if "C101" in x)
    assert line.startswith("::error file=inventory/migrations/0002_item_weight.py,line=7,")


def test_explain_lists_and_prints_rules(tmp_path: Path) -> None:
    listing = Project(tmp_path).run("explain")
    assert listing.status == 0 and "C101" in listing.stdout
    one = Project(tmp_path).run("explain", "c101")
    assert "Why it breaks production" in one.stdout
    assert Project(tmp_path).run("explain", "Z999").status == 2


def test_unused_migration_suppression_is_reported(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write(
        "inventory/migrations/0003_item_stock.py",
        ADD_STOCK.replace(
            "    operations = [",
            '    rollout_ignore = {"C101": "copied from 0002 by mistake"}\n    operations = [',
        ),
    )
    doc = project.check("inventory", "--format", "json").json()
    unused = [f for f in doc["findings"] if f["rule"] == "M408"]
    assert [(f["migration"], f["path"]) for f in unused] == [
        ("0003_item_stock", "inventory/migrations/0003_item_stock.py")
    ]


@pytest.mark.parametrize("extra", [(), ("--sql",)], ids=["rules", "sql"])
def test_server_version_older_than_django_supports_is_one_line(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    import django
    from django.db.backends.postgresql.features import DatabaseFeatures

    floor = DatabaseFeatures.minimum_database_version[0]
    # Django 6.0 dropped PostgreSQL 14.
    assert floor == (14 if django.VERSION < (6, 0) else 15)
    # A PostgreSQL project that is never connected to: the check is offline.
    offline = {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "HOST": "0.0.0.0", "PORT": 1}
    project = inventory(tmp_path, offline)
    assert project.check("--server-version", str(floor), *extra).status == 1
    result = project.check("--server-version", f"{floor - 1}.9", *extra)
    assert result.status == 2, result.stdout
    assert (
        f"PostgreSQL {floor - 1}.9, but Django {django.get_version()} supports PostgreSQL"
        f" {floor} or later"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_several_leaf_nodes_are_a_finding_not_a_crash(tmp_path: Path) -> None:
    project = inventory(tmp_path)
    project.write(
        "inventory/migrations/0003_item_colour.py",
        migration(
            'migrations.AddField("item", "colour", models.CharField(max_length=20, null=True)),',
            '[("inventory", "0002_item_weight")]',
        ),
    )
    result = project.check("--format", "json")
    assert result.status == 1, result.stderr
    m404 = [f for f in result.json()["findings"] if f["rule"] == "M404"]
    assert len(m404) == 1
    assert "0003_item_colour" in m404[0]["message"] and "0003_item_stock" in m404[0]["message"]

