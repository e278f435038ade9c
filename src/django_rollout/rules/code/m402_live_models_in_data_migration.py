"""M402: a data migration that uses the application's live models."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.source import function_source, module_tree, relative
from django_rollout.rules.base import Rule

# Values reached through a model that are constants, not queries: `Order.Status.PAID`.
_CONSTANTS = (str, int, float, bool, bytes, tuple, frozenset)


@dataclass(frozen=True)
class Binding:
    """A name bound by an import: what it refers to and where the import is."""

    name: str
    target: Any
    module: str  # the module imported from, or the assigned expression
    line: int
    assigned: bool = False  # bound by a module-level assignment, not an import

    @property
    def source(self) -> str:
        if self.assigned:
            return f"bound at module level by `{self.module}`"
        return f"imported from `{self.module}`"


def _module(name: str) -> ModuleType | None:
    found = sys.modules.get(name)
    if found is not None:
        return found
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a module we cannot import tells us nothing
        return None


def _bindings(
    node: ast.Import | ast.ImportFrom, package: str | None, line: int
) -> Iterator[Binding]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                target = _module(alias.name)
                yield Binding(alias.asname, target, alias.name, line)
            else:
                top = alias.name.partition(".")[0]
                _module(alias.name)  # binds the submodule as an attribute of the top package
                yield Binding(top, _module(top), alias.name, line)
        return
    try:
        source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
    except (ImportError, ValueError):
        return
    module = _module(source)
    for alias in node.names:
        if alias.name == "*":
            continue
        target = getattr(module, alias.name, None) if module is not None else None
        if target is None:
            target = _module(f"{source}.{alias.name}")
        yield Binding(alias.asname or alias.name, target, source, line)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Yield the statements a module runs at import time (including under if/try/with)."""
    for stmt in body:
        if isinstance(stmt, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for inner in getattr(stmt, block, []) or []:
                    if isinstance(inner, ast.ExceptHandler):
                        yield from _top_level(inner.body)
                    else:
                        yield from _top_level([inner])
        else:
            yield stmt


@lru_cache(maxsize=256)
def _module_bindings(path: str, package: str | None) -> tuple[Binding, ...]:
    tree = module_tree(path)
    if tree is None:
        return ()
    return tuple(
        b
        for node in _top_level(tree.body)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for b in _bindings(node, package, node.lineno)
    )


@lru_cache(maxsize=256)
def _module_assignments(path: str) -> dict[str, tuple[int, str]]:
    """Names the module binds by assignment (``Address = get_model("address", "Address")``):
    name -> (line, the assigned expression), the last assignment of each name."""
    tree = module_tree(path)
    if tree is None:
        return {}
    out: dict[str, tuple[int, str]] = {}
    for node in _top_level(tree.body):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    out[target.id] = (node.lineno, ast.unparse(node.value))
    return out


def _function_locals(tree: ast.AST) -> set[str]:
    """Names local to the function(s) in ``tree``: parameters and assigned names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def is_live_model(obj: Any) -> bool:
    """Return True for a concrete model class of the running project's app registry."""
    from django.apps import apps

    if not (isinstance(obj, type) and issubclass(obj, models.Model)):
        return False
    meta = getattr(obj, "_meta", None)
    # Historical models (apps.get_model) live in their own registry, not the global one.
    return meta is not None and not meta.abstract and meta.apps is apps


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _uses_live_model(name: ast.Name, target: Any, parents: dict[ast.AST, ast.AST]) -> Any:
    """Follow ``name.attr.attr`` from an imported object; return the live model it queries."""
    node: ast.AST = name
    obj = target
    while True:
        parent = parents.get(node)
        attribute = parent if isinstance(parent, ast.Attribute) and parent.value is node else None
        if is_live_model(obj):
            if attribute is None:
                return obj
            if attribute.attr == "_meta":
                return None  # the model's description (a table name, a field): no query
            reached = getattr(obj, attribute.attr, None)
            if isinstance(reached, _CONSTANTS) or (
                isinstance(reached, type) and not issubclass(reached, models.Model)
            ):
                return None  # a nested Choices class or a constant: no query
            return obj
        if attribute is None or obj is None:
            return None
        obj = getattr(obj, attribute.attr, None)
        node = attribute


def live_model_uses(func: Callable[..., Any]) -> list[tuple[Binding, Any, str]]:
    """Return (import, live model, path) for each live model ``func`` reaches via an import."""
    tree, path, first = function_source(func)
    if tree is None or path is None:
        return []
    module_name = getattr(func, "__module__", None)
    module = sys.modules.get(module_name) if module_name else None
    package = getattr(module, "__package__", None)
    bindings = {b.name: b for b in _module_bindings(path, package)}
    # A model the module binds by assignment: its value is what the function reads.
    namespace = getattr(func, "__globals__", {})
    for name, (line, expr) in _module_assignments(path).items():
        if name not in bindings and is_live_model(namespace.get(name)):
            bindings[name] = Binding(name, namespace[name], expr, line, assigned=True)
    nodes = list(ast.walk(tree))
    imported_here: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            line = (first or 1) + node.lineno - 1
            inner = {b.name: b for b in _bindings(node, package, line)}
            bindings.update(inner)
            imported_here |= inner.keys()
    # A name the function assigns is its own local (``User = apps.get_model(...)``).
    shadowed = _function_locals(tree) - imported_here
    names = [
        node
        for node in nodes
        if isinstance(node, ast.Name)
        and isinstance(node.ctx, ast.Load)
        and node.id in bindings
        and node.id not in shadowed
    ]
    if not names:
        return []
    parents = _parents(tree)
    found: dict[int, tuple[Binding, Any, str]] = {}
    for node in names:
        binding = bindings[node.id]
        model = _uses_live_model(node, binding.target, parents)
        if model is not None:
            found.setdefault(binding.line, (binding, model, path))
    return [found[line] for line in sorted(found)]


class LiveModelsInDataMigration(Rule):
    """A data migration that uses the application's models instead of ``apps.get_model``.

    What it does
    ------------
    Flags a ``RunPython`` whose function (forwards or reverse) queries a model class imported
    from the project (``from shop.models import Product``, ``import shop.models``, at module
    level or inside the function) or bound to a module-level name by any other means
    (``Product = get_model("shop", "Product")`` with a project's model loader,
    ``User = get_user_model()``), instead of the historical model from
    ``apps.get_model("shop", "Product")``. Models of ``django.contrib`` apps count too: they
    are live models as well. Imports that reach no model query stay silent: constants and
    choices (``Order.Status.PAID``), the model's ``_meta`` (a table name), helpers,
    ``django.db.models``, imports used only outside the ``RunPython`` functions, and a
    name the function assigns itself (``User = apps.get_model("auth", "User")``). The
    finding points at the import or assignment line.

    Why it breaks production
    ------------------------
    The imported class is the model of the code being deployed, not the model at this point
    of the migration history. It queries every column of today's model: on a database where
    a later migration has not run yet, ``ProgrammingError: column shop_product.weight_grams
    does not exist``; once a later release removes or renames a field, the old migration
    breaks for every fresh database (CI, new environments, disaster recovery). Custom
    ``save()``, managers and signals of today's code run inside the migration too.

    Example
    -------
    ```python
    from shop.models import Product

    def fill_slugs(apps, schema_editor):
        for product in Product.objects.filter(slug=""):
            product.slug = str(product.pk)
            product.save(update_fields=["slug"])

    operations = [migrations.RunPython(fill_slugs, migrations.RunPython.noop)]
    ```

    Use instead
    -----------
    ```python
    def fill_slugs(apps, schema_editor):
        Product = apps.get_model("shop", "Product")
        for product in Product.objects.filter(slug=""):
            product.slug = str(product.pk)
            product.save(update_fields=["slug"])

    operations = [migrations.RunPython(fill_slugs, migrations.RunPython.noop)]
    ```
    """

    id = "M402"
    # Today's model meets a schema that lacks its columns or its table.
    sqlstates = ("42703", "42P01")
    name = "live-models-in-data-migration"
    severity = Severity.ERROR
    message = (
        "`{function}` in `{migration}` queries the live model `{live_model}` {source}: it"
        " reads today's columns, which do not exist at this point of the migration history"
    )
    help = 'Use `apps.get_model("{model_app}", "{live_model}")` inside `{function}` instead'
    recipe_steps = (
        "Stop `{function}` using the `{live_model}` {source}.",
        "At the top of `{function}(apps, schema_editor)`, get the historical model:"
        " `{live_model} = apps.get_model(\"{model_app}\", \"{live_model}\")`.",
        "Move any logic the migration borrowed from the model (custom `save()`, managers,"
        " methods) into the migration itself: historical models do not have it.",
    )
    docs_examples_run = False  # the example needs a real app's models module

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        op = ctx.operation
        if not ctx.database or not isinstance(op, migrations.RunPython):
            return
        seen: set[tuple[str, int]] = set()
        for func in (op.code, op.reverse_code):
            if func is None or func is migrations.RunPython.noop:
                continue
            for binding, model, path in live_model_uses(func):
                if (path, binding.line) in seen:
                    continue
                seen.add((path, binding.line))
                yield self.finding(
                    ctx,
                    location=Location(relative(path), binding.line),
                    function=getattr(func, "__name__", "function"),
                    live_model=model.__name__,
                    model_app=model._meta.app_label,
                    module=binding.module,
                    source=binding.source,
                )
