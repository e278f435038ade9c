"""Source locations of operations, resolved lazily (only for migrations with findings)."""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=512)
def _operation_lines(path: str) -> dict[tuple[Any, ...], int]:
    """Map (index, *nesting) of each operation literal in a migration file to its line."""
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return {}
    lines: dict[tuple[Any, ...], int] = {}
    # The Migration class is a top-level class: no need to walk the whole tree.
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            if not any(isinstance(t, ast.Name) and t.id == "operations" for t in targets):
                continue
            if isinstance(value, ast.List | ast.Tuple):
                _index(value.elts, (), lines)
    return lines


def _index(
    elements: Sequence[ast.expr], prefix: tuple[Any, ...], out: dict[tuple[Any, ...], int]
) -> None:
    for i, element in enumerate(elements):
        key = (*prefix, i)
        out[key] = element.lineno
        if isinstance(element, ast.Call):
            for keyword in element.keywords:
                if keyword.arg in ("database_operations", "state_operations") and isinstance(
                    keyword.value, ast.List | ast.Tuple
                ):
                    _index(keyword.value.elts, (*key, keyword.arg), out)


def operation_line(
    path: str | None, index: int | None, nesting: Sequence[tuple[str, int]] = ()
) -> int | None:
    """Return the 1-based line of operation ``index`` (and its nested sub-operation)."""
    if path is None or index is None:
        return None
    lines = _operation_lines(path)
    key: tuple[Any, ...] = (index,)
    best = lines.get(key)
    for name, i in nesting:
        key = (*key, name, i)
        best = lines.get(key, best)
    return best


def relative(path: str | None) -> str | None:
    """Return a path relative to the current directory when it lies below it."""
    if path is None:
        return None
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@lru_cache(maxsize=2048)
def function_source(func: Callable[..., Any]) -> tuple[ast.AST | None, str | None, int | None]:
    """Return the parsed body of a RunPython function, its file and first line.

    Cached: several rules read the same function. Callers must not mutate the tree.
    """
    try:
        lines, first = inspect.getsourcelines(func)
        path = inspect.getsourcefile(func)
    except (OSError, TypeError):
        return None, None, None
    source = "".join(lines)
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None, path, first
    return tree, path, first
