"""M404: more than one leaf node in an app."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import ProjectContext
from django_rollout.graph.source import relative
from django_rollout.rules.base import Rule, fill


def _path_of(pctx: ProjectContext, migration: Any) -> str | None:
    graph = pctx.extra.get("graph")
    if graph is not None:
        path = graph.path_of(migration)
        return str(path) if path else None
    module = sys.modules.get(type(migration).__module__)
    file = getattr(module, "__file__", None)
    return str(file) if file else None


class MultipleLeafMigrations(Rule):
    """More than one leaf node in an app: conflicting migrations that need a merge.

    What it does
    ------------
    Flags each app whose migration graph ends in more than one leaf: two branches (often two
    ``0002`` migrations merged from different pull requests) that no migration depends on
    together. The finding names the leaves and points at the newest one (the last by name).
    Apps excluded from the check are skipped.

    Why it breaks production
    ------------------------
    ``migrate`` refuses to run: ``CommandError: Conflicting migrations detected; multiple leaf
    nodes in the migration graph: (0002_product_sku, 0002_product_weight in shop). To fix them
    run 'python manage.py makemigrations --merge'``. The deploy stops at its migrate step,
    with the new code possibly already built and shipped.

    Example
    -------
    ```python
    # shop/migrations/0002_product_sku.py     dependencies = [("shop", "0001_initial")]
    # shop/migrations/0002_product_weight.py  dependencies = [("shop", "0001_initial")]
    operations = []
    ```

    Use instead
    -----------
    ```python
    # shop/migrations/0003_merge.py, written by `makemigrations --merge`:
    dependencies = [("shop", "0002_product_sku"), ("shop", "0002_product_weight")]
    operations = []
    ```
    """

    id = "M404"
    name = "multiple-leaf-migrations"
    severity = Severity.ERROR
    message = (
        "`{app_label}` has {count} leaf migrations ({leaves}): `migrate` refuses to run with"
        " `Conflicting migrations detected`"
    )
    help = "Run `python manage.py makemigrations --merge {app_label}` and commit the merge"
    recipe_steps = (
        "Check that the branches ({leaves}) do not change the same fields in incompatible"
        " ways; if they do, rewrite one of them instead of merging.",
        "Run `python manage.py makemigrations --merge {app_label}` to write a migration that"
        " depends on every leaf.",
        "Commit it with the code; check again: `{app_label}` has one leaf.",
    )
    docs_examples_run = False  # the hazard is in the graph, not in one migration's operations

    def check_project(self, pctx: ProjectContext) -> Iterable[Finding]:
        loader = pctx.loader
        if loader is None:
            return
        leaves: dict[str, list[str]] = {}
        for app_label, name in loader.graph.leaf_nodes():
            leaves.setdefault(app_label, []).append(name)
        for app_label in sorted(leaves):
            names = sorted(leaves[app_label])
            if len(names) < 2 or not pctx.judged_apps(app_label):
                continue
            newest = names[-1]
            migration = loader.graph.nodes.get((app_label, newest))
            path = _path_of(pctx, migration) if migration is not None else None
            filled = {
                "app_label": app_label,
                "migration": newest,
                "model": "",
                "table": "",
                "count": len(names),
                "leaves": ", ".join(names),
            }
            finding = self.finding(
                app_label=app_label,
                migration=newest,
                location=Location(relative(path), 1) if path else None,
                message=fill(self.message, filled),
                help=fill(self.help, filled),
                details={"leaves": tuple(names)},
            )
            yield replace(finding, recipe=self.recipe(filled))
