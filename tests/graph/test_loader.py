"""The graph loader: the same graph and plan as Django's own loader, whatever the keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _project import Project, migration

# Prints each node's parents and the full plan, from Django's stock loader and from ours.
COMPARE = """\
import json, django
django.setup()
from django.db.migrations.loader import MigrationLoader
from django_rollout.graph.loader import full_plan, load_graph

def shape(loader):
    graph = loader.graph
    return {
        "parents": {
            ".".join(k): sorted(".".join(p.key) for p in graph.node_map[k].parents)
            for k in sorted(graph.nodes)
        },
        "plan": [f"{m.app_label}.{m.name}" for m in full_plan(loader)],
    }

print(json.dumps({
    "django": shape(MigrationLoader(None, ignore_no_migrations=True)),
    "ours": shape(load_graph().loader),
}))
"""


def _first(app: str) -> str:
    return f'("{app}", "__first__")'


def test_first_and_latest_keys_resolve_as_djangos_own(tmp_path: Path) -> None:
    """``__first__``/``__latest__`` of other apps (and ``swappable_dependency``) resolve to the
    nodes Django's loader picks, also when a ``run_before`` inside the named app changes its
    first migration halfway through the resolution."""
    project = Project(tmp_path)
    # Looked up before twin's run_before is resolved: twin's roots are 0001_a and 0001_b.
    project.app(
        "early",
        {
            "0001_initial": migration(
                "", f'[{_first("twin")}, migrations.swappable_dependency("auth.User")]'
            ),
            "0002_more": migration(
                "", f'[("early", "0001_initial"), ("twin", "__latest__"), {_first("auth")}]'
            ),
        },
    )
    # 0001_b runs before 0001_a: once resolved, twin's only root is 0001_b.
    project.app(
        "twin",
        {
            "0001_a": migration(""),
            "0001_b": migration("", extra='run_before = [("twin", "0001_a")]'),
            "0002_c": migration("", '[("twin", "0001_a")]'),
        },
    )
    # Looked up after it: Django now answers 0001_b.
    project.app(
        "late",
        {
            "0001_initial": migration("", f'[{_first("twin")}, {_first("early")}]'),
            "0002_more": migration(
                "", f'[("late", "0001_initial"), ("twin", "__latest__"), {_first("nomig")}]'
            ),
        },
    )
    project.write("nomig/__init__.py", "")
    project.write("nomig/models.py", "")
    project.configure(["early", "twin", "late", "nomig"])
    project.write("compare.py", COMPARE)
    proc = subprocess.run(
        [sys.executable, "compare.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"DJANGO_SETTINGS_MODULE": project.settings, "PYTHONPATH": str(tmp_path)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["ours"] == got["django"]
    parents = got["ours"]["parents"]
    # The case the memo must not hide: the same key, answered differently before and after.
    assert "twin.0001_a" in parents["early.0001_initial"]
    assert "twin.0001_b" in parents["late.0001_initial"]
    assert "twin.0002_c" in parents["late.0002_more"]
    assert "auth.0001_initial" in parents["early.0001_initial"]
