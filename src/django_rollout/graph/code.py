"""The models a ``RunPython`` function names, read from its code, never run.

Shared by the rules that read data migrations (``rules/locks/_data.py``, M405) and by the
rehearsal, which points its background traffic at the tables a migration's code works on.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from django.db.migrations.state import ModelState

from django_rollout.graph.model import ModelKey
from django_rollout.graph.source import function_source

# Calls that reach the database past the models: raw SQL may name any table.
_RAW_SQL = frozenset({"cursor", "raw", "extra", "execute", "executemany", "RawSQL"})


def string_constant(node: ast.expr | None) -> str | None:
    """The value of a string literal, None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def get_model_key(call: ast.AST) -> ModelKey | None:
    """Return the key of ``apps.get_model("app", "Model")`` / ``("app.Model")`` (keywords
    too), or None when ``call`` is not one or names its model with computed values."""
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "get_model"
    ):
        return None
    args = [string_constant(a) for a in call.args]
    kwargs = {k.arg: string_constant(k.value) for k in call.keywords if k.arg}
    app, model = (args + [None, None])[:2]
    app = app or kwargs.get("app_label")
    model = model or kwargs.get("model_name")
    if app and not model and "." in app:
        app, _, model = app.partition(".")
    if not app or not model:
        return None
    return (app, model.lower())


def class_key(name: str, models: Mapping[ModelKey, ModelState], app_label: str) -> ModelKey | None:
    """Return the model a class name stands for, as imported (``Product``, never the
    ``product`` of a loop variable): the one of ``app_label`` first."""
    matches = [key for key in models if key[1] == name.lower() and models[key].name == name]
    for key in matches:
        if key[0] == app_label:
            return key
    return matches[0] if matches else None


def models_named(
    code: Callable[..., Any], app_label: str, models: Mapping[ModelKey, ModelState]
) -> frozenset[ModelKey] | None:
    """Return the models a ``RunPython`` function names: each it gets from
    ``apps.get_model`` and each it names by its class.

    None when the code may reach further than it names: its source cannot be read, a
    ``get_model`` computes its names, ``apps`` is handed on (to a helper, ``get_models()``),
    ``schema_editor`` is used for more than ``schema_editor.connection.alias``, it runs raw
    SQL (``cursor``, ``raw``, ``extra``, ``execute``), or it names no model.
    """
    tree, _, _ = function_source(code)
    body = getattr(tree, "body", None)
    if tree is None or not body or not isinstance(body[0], ast.FunctionDef):
        return None
    params = [a.arg for a in (*body[0].args.posonlyargs, *body[0].args.args)]
    apps_name, editor = (params + [None, None])[:2]
    found: set[ModelKey] = set()
    # A name the function binds itself (``Order = apps.get_model(...)``, a loop variable) is
    # no imported class, whatever it is called.
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name)]
    bound = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    # Each use of ``apps`` and ``schema_editor`` must be one of these.
    expected = {apps_name: 0, editor: 0}
    used = {apps_name: 0, editor: 0}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in _RAW_SQL:
                return None
            if called == "get_model":
                key = get_model_key(node)
                if key is None:
                    return None
                found.add(key)
                expected[apps_name] += _is_name(getattr(func, "value", None), apps_name)
        elif isinstance(node, ast.Attribute) and node.attr == "alias":
            connection = node.value
            if isinstance(connection, ast.Attribute) and connection.attr == "connection":
                expected[editor] += _is_name(connection.value, editor)
    for name in names:
        if name.id in used:
            used[name.id] += 1
        elif name.id not in bound and (key := class_key(name.id, models, app_label)):
            found.add(key)
    if used != expected:
        return None
    return frozenset(found) or None


def _is_name(node: ast.AST | None, name: str | None) -> bool:
    return name is not None and isinstance(node, ast.Name) and node.id == name
