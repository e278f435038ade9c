"""The default run's cache of verdicts: a warm run reports what a cold one does, and every
edit that can change a verdict re-judges the migrations it can change, and no others."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from _project import Project, migration

from django_rollout.testing import ensure_settings, make_migration

INITIAL = migration(
    """
    migrations.CreateModel(
        name="Item",
        fields=[
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ],
    ),
    """,
    extra="initial = True",
)
ADD_WEIGHT = migration(
    'migrations.AddField("item", "weight", models.IntegerField(default=0)),',
    '[("inventory", "0001_initial")]',
)
SAFE_WEIGHT = migration(
    'migrations.AddField("item", "weight", models.IntegerField(db_default=0, default=0)),',
    '[("inventory", "0001_initial")]',
)
FILL = (
    "from django.db import migrations\n"
    "from inventory.helpers import fill\n\n"
    "class Migration(migrations.Migration):\n"
    '    dependencies = [("inventory", "0002_item_weight")]\n'
    "    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]\n"
)
HELPERS = (
    "def fill(apps, schema_editor):\n"
    '    Item = apps.get_model("inventory", "Item")\n'
    "    Item.objects.update(weight=1)\n"
)
ADD_CODE = migration(
    'migrations.AddField("item", "code", models.CharField(max_length=10, null=True)),',
    '[("inventory", "0003_fill")]',
)
MODELS = """
class Item(models.Model):
    name = models.CharField(max_length=100)
    weight = models.IntegerField(default=0)
    code = models.CharField(max_length=10, null=True)
"""
COUNTS = re.compile(r"(\d+) migration\(s\) kept from .*, (\d+) judged afresh")


def shop(root: Path) -> Project:
    project = Project(root)
    project.app(
        "inventory",
        {
            "0001_initial": INITIAL,
            "0002_item_weight": ADD_WEIGHT,
            "0003_fill": FILL,
            "0004_item_code": ADD_CODE,
        },
        MODELS,
    )
    project.write("inventory/helpers.py", HELPERS)
    project.configure(["inventory"])
    return project


def run(project: Project, *args: str) -> tuple[tuple[int, int], dict]:
    result = project.check("-v", "2", "--format", "json", "--cache-dir", "cache", *args)
    assert result.status in (0, 1), result.stderr
    found = COUNTS.search(result.stderr)
    assert found, result.stderr
    return (int(found[1]), int(found[2])), json.loads(result.stdout)


def findings(doc: dict) -> list[tuple[str, str]]:
    return [(f["migration"], f["rule"]) for f in doc["findings"] if f["app_label"] == "inventory"]


def test_warm_run_reports_what_a_cold_one_does_and_judges_nothing(tmp_path: Path) -> None:
    project = shop(tmp_path)
    cold = project.check("--format", "json", "--no-cache")
    assert not (tmp_path / "cache").exists() and not (tmp_path / ".django_rollout_cache").exists()
    (kept, judged), first = run(project)
    assert kept == 0 and judged > 4  # contenttypes and auth are judged too
    (kept, judged), second = run(project)
    assert (kept, judged) == (kept, 0) and kept > 4
    assert first == second == json.loads(cold.stdout)
    assert ("0002_item_weight", "C101") in findings(second)
    # The store keeps itself out of version control.
    assert (tmp_path / "cache" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_an_edited_migration_is_judged_again_with_every_one_after_it(tmp_path: Path) -> None:
    project = shop(tmp_path)
    (_, total), _ = run(project)
    project.write("inventory/migrations/0002_item_weight.py", SAFE_WEIGHT)
    (kept, judged), doc = run(project)
    # 0002, 0003 and 0004 of inventory come last in the plan: the three are judged again.
    assert (kept, judged) == (total - 3, 3)
    assert ("0002_item_weight", "C101") not in findings(doc)
    assert doc == json.loads(project.check("--format", "json", "--no-cache").stdout)


def test_an_edited_module_that_a_migration_uses_re_judges_it(tmp_path: Path) -> None:
    project = shop(tmp_path)
    (_, total), _ = run(project)
    project.write("inventory/helpers.py", HELPERS.replace("weight=1", "weight=2"))
    (kept, judged), _ = run(project)
    assert (kept, judged) == (total - 2, 2)  # 0003_fill imports it; 0004 comes after it
    # models.py is not imported by any migration: editing it keeps every verdict.
    project.write("inventory/models.py", "from django.db import models\n" + MODELS + "\n# x\n")
    (kept, judged), _ = run(project)
    assert (kept, judged) == (total, 0)


def test_settings_and_configuration_are_in_the_key(tmp_path: Path) -> None:
    project = shop(tmp_path)
    (_, total), _ = run(project)
    project.configure(["inventory"], extra='ROLLOUT = {"severity": {"C101": "warning"}}')
    (kept, judged), _ = run(project)
    assert (kept, judged) == (0, total)
    (kept, judged), _ = run(project, "--vendor", "postgresql")
    assert (kept, judged) == (0, total)


def test_a_filtered_run_uses_and_keeps_the_store(tmp_path: Path) -> None:
    project = shop(tmp_path)
    (_, total), _ = run(project)
    (kept, judged), doc = run(project, "inventory")
    assert (kept, judged) == (4, 0)
    assert {f["app_label"] for f in doc["findings"]} <= {"inventory", None}
    (kept, judged), _ = run(project)
    assert (kept, judged) == (total, 0)


def test_a_broken_or_unwritable_store_is_no_error(tmp_path: Path) -> None:
    project = shop(tmp_path)
    (_, total), first = run(project)
    for store in (tmp_path / "cache").glob("verdicts-*.pickle"):
        store.write_bytes(b"not a pickle")
    (kept, judged), doc = run(project)
    assert (kept, judged) == (0, total) and doc == first
    (kept, judged), _ = run(project)
    assert (kept, judged) == (total, 0)
    project.write("blocked", "a file where the cache directory would go")
    result = project.check("--format", "json", "--cache-dir", "blocked/cache")
    assert result.status == 1 and json.loads(result.stdout) == first, result.stderr


def test_a_unit_is_never_served_from_the_store(tmp_path: Path) -> None:
    project = shop(tmp_path)
    run(project)
    snapshot = tmp_path / "deployed.json"
    snapshot.write_text(
        json.dumps(
            {
                "format": "django-rollout-snapshot",
                "version": 1,
                "applied": [["inventory", "0001_initial"]],
                "tables": {"inventory_item": 10},
            }
        )
    )
    result = project.check("-v", "2", "--cache-dir", "cache", "--applied-from", str(snapshot))
    assert result.status in (0, 1), result.stderr
    assert not COUNTS.search(result.stderr)


@pytest.fixture
def _django() -> None:
    ensure_settings()


def test_each_migration_on_its_own_sees_earlier_ones_deployed(_django: None) -> None:
    """What a migration's verdict depends on is the same whether the earlier migrations were
    judged or only applied: the key of the cache leaves the report filter out."""
    from django.db import migrations, models

    from django_rollout.conf import Config
    from django_rollout.graph.walk import Walker, WalkSettings
    from django_rollout.rules.registry import all_rules

    plan = [
        make_migration(
            "shop",
            "0001_initial",
            [
                migrations.CreateModel(
                    "Item",
                    [
                        ("id", models.BigAutoField(primary_key=True)),
                        ("name", models.CharField(max_length=10)),
                    ],
                )
            ],
        ),
        make_migration(
            "shop", "0002_fill", [migrations.RunSQL("UPDATE shop_item SET name = 'x'", "")]
        ),
        make_migration(
            "shop",
            "0003_code",
            [
                migrations.AddField("item", "code", models.CharField(max_length=10, null=True)),
                migrations.AddConstraint(
                    "item", models.UniqueConstraint(fields=["code", "name"], name="item_code")
                ),
            ],
        ),
    ]
    verdicts = []
    for judged in (lambda key: True, lambda key: key[1] == "0003_code"):
        walker = Walker(
            [r() for r in all_rules()], WalkSettings(Config(), "postgresql", (17,)), judged
        )
        found = walker.each_on_its_own(plan)
        verdicts.append(
            sorted((f.rule or "", f.message) for f in found if f.migration == "0003_code")
        )
        assert walker.history and all(step.deployed for step in walker.history)
    assert verdicts[0] == verdicts[1]


def test_referred_files_leave_installed_packages_out(tmp_path: Path) -> None:
    from django_rollout.graph.verdicts import Sources

    (tmp_path / "pkg_refer").mkdir()
    (tmp_path / "pkg_refer" / "__init__.py").write_text("")
    (tmp_path / "pkg_refer" / "deep.py").write_text("def helper():\n    return 1\n")
    (tmp_path / "pkg_refer" / "near.py").write_text(
        "import json\nfrom django.db import models\nfrom pkg_refer.deep import helper\n"
    )
    (tmp_path / "pkg_refer" / "top.py").write_text("from pkg_refer import near\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import pkg_refer.top as top

        files = Sources().referred(top)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("pkg_refer")]:
            del sys.modules[name]
    names = sorted(Path(f).name for f in files)
    assert names == ["deep.py", "near.py"]
