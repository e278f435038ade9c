from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db.migrations.graph import MigrationGraph

from django_rollout.graph.context import ProjectContext
from django_rollout.rules.code.m404_multiple_leaf_migrations import MultipleLeafMigrations
from django_rollout.testing import make_migration

pytestmark = pytest.mark.usefixtures("django_settings")


@dataclass
class Loader:
    """What the rule reads of a MigrationLoader: its ``graph``."""

    graph: MigrationGraph


def graph_of(edges: dict[tuple[str, str], list[tuple[str, str]]]) -> MigrationGraph:
    graph = MigrationGraph()
    for key in edges:
        graph.add_node(key, make_migration(key[0], key[1], []))
    for key, parents in edges.items():
        for parent in parents:
            graph.add_dependency(None, key, parent)
    return graph


def check(edges: Any, judged: Any = lambda label: True) -> list[Any]:
    pctx = ProjectContext(loader=Loader(graph_of(edges)), judged_apps=judged)  # type: ignore[arg-type]
    return list(MultipleLeafMigrations().check_project(pctx))


TWO_LEAVES = {
    ("shop", "0001_initial"): [],
    ("shop", "0002_product_sku"): [("shop", "0001_initial")],
    ("shop", "0002_product_weight"): [("shop", "0001_initial")],
}


def test_flags_app_with_two_leaves() -> None:
    [finding] = check(TWO_LEAVES)
    assert finding.rule == "M404"
    assert finding.app_label == "shop"
    assert finding.migration == "0002_product_weight"  # the last by name
    assert "0002_product_sku, 0002_product_weight" in finding.message
    assert "`shop` has 2 leaf migrations" in finding.message
    assert "makemigrations --merge shop" in finding.help
    assert dict(finding.details)["leaves"] == ("0002_product_sku", "0002_product_weight")


def test_flags_each_conflicting_app_once() -> None:
    edges = {
        **TWO_LEAVES,
        ("shop", "0003_other"): [("shop", "0002_product_sku")],
        ("billing", "0001_initial"): [],
        ("billing", "0002_a"): [("billing", "0001_initial")],
        ("billing", "0002_b"): [("billing", "0001_initial")],
        ("billing", "0002_c"): [("billing", "0001_initial"), ("shop", "0001_initial")],
    }
    findings = check(edges)
    assert [(f.app_label, f.migration) for f in findings] == [
        ("billing", "0002_c"),
        ("shop", "0003_other"),
    ]
    assert "3 leaf migrations" in findings[0].message


@pytest.mark.parametrize(
    "edges",
    [
        {("shop", "0001_initial"): []},
        {
            **TWO_LEAVES,
            ("shop", "0003_merge"): [("shop", "0002_product_sku"), ("shop", "0002_product_weight")],
        },
        {
            ("shop", "0001_initial"): [],
            ("billing", "0001_initial"): [("shop", "0001_initial")],
        },
        {},
    ],
    ids=["one-migration", "merged", "one-leaf-per-app", "empty"],
)
def test_ignores_graph_with_one_leaf_per_app(edges: Any) -> None:
    assert check(edges) == []


def test_ignores_apps_not_judged() -> None:
    assert check(TWO_LEAVES, judged=lambda label: label != "shop") == []


def test_ignores_missing_loader() -> None:
    pctx = ProjectContext(loader=None, judged_apps=lambda label: True)
    assert list(MultipleLeafMigrations().check_project(pctx)) == []


MIGRATION = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = {dependencies}
    operations = {operations}
"""

SCRIPT = """\
import json
import django
from django.conf import settings

settings.configure(INSTALLED_APPS=["conflicted"], DATABASES={}, USE_TZ=True)
django.setup()

from django_rollout.graph.context import ProjectContext
from django_rollout.graph.loader import load_graph
from django_rollout.rules.code.m404_multiple_leaf_migrations import MultipleLeafMigrations

graph = load_graph()
pctx = ProjectContext(
    loader=graph.loader, judged_apps=lambda label: True, extra={"graph": graph, "unit": []}
)
print(json.dumps([f.to_dict() for f in MultipleLeafMigrations().check_project(pctx)]))
"""


def test_flags_real_app_on_disk_loaded_through_load_graph(tmp_path: Path) -> None:
    app = tmp_path / "conflicted"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text("")
    initial = '[migrations.CreateModel("Product", [("id", models.BigAutoField(primary_key=True))])]'
    files = {
        "0001_initial": ("[]", initial),
        "0002_product_sku": ('[("conflicted", "0001_initial")]', "[]"),
        "0002_product_weight": ('[("conflicted", "0001_initial")]', "[]"),
    }
    for name, (deps, ops) in files.items():
        text = MIGRATION.format(dependencies=deps, operations=ops)
        (app / "migrations" / f"{name}.py").write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [finding] = json.loads(result.stdout)
    assert finding["rule"] == "M404"
    assert finding["app_label"] == "conflicted"
    assert finding["migration"] == "0002_product_weight"
    assert finding["path"].endswith(os.path.join("migrations", "0002_product_weight.py"))
    assert finding["line"] == 1
    assert "0002_product_sku, 0002_product_weight" in finding["message"]
