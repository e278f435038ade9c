"""Source locations of operations, resolved lazily (only for migrations with findings)."""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from django_rollout.graph.loader import LINE_ATTRIBUTE


@lru_cache(maxsize=512)
def _operation_lines(path: str) -> dict[tuple[Any, ...], int]:
    """Map (index, *nesting) of each operation literal in a migration file to its line."""
    tree = module_tree(path)
    if tree is None:
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
    path: str | None,
    index: int | None,
    nesting: Sequence[tuple[str, int]] = (),
    operations: Sequence[Any] = (),
) -> int | None:
    """Return the 1-based line of operation ``index`` (and its nested sub-operation).

    ``operations`` are the migration's operations: where the loader recorded the line that
    built the operation in this file, that line is the answer and the file is not parsed.
    """
    if path is None or index is None:
        return None
    recorded = _recorded_line(path, index, nesting, operations)
    if recorded is not None:
        return recorded
    lines = _operation_lines(path)
    key: tuple[Any, ...] = (index,)
    best = lines.get(key)
    for name, i in nesting:
        key = (*key, name, i)
        best = lines.get(key, best)
    return best


def _recorded_line(
    path: str, index: int, nesting: Sequence[tuple[str, int]], operations: Sequence[Any]
) -> int | None:
    try:
        operation = operations[index]
        for name, i in nesting:
            operation = getattr(operation, name)[i]
    except (IndexError, AttributeError, TypeError):
        return None
    record = getattr(operation, LINE_ATTRIBUTE, None)
    if isinstance(record, tuple) and record[0] == path:
        return int(record[1])
    return None


def relative(path: str | None) -> str | None:
    """Return a path relative to the current directory when it lies below it."""
    if path is None:
        return None
    # A prefix test, not os.path.relpath: relpath normalises both paths and walks their
    # parts, a cost paid once per migration file that has a finding (about 2,000 a run).
    absolute = os.path.abspath(path)
    here = os.path.join(os.getcwd(), "")
    return absolute[len(here) :] if absolute.startswith(here) else path


@lru_cache(maxsize=32)  # rules read a file together, operation by operation
def module_tree(path: str) -> ast.Module | None:
    """Return the parsed source file at ``path`` (None when unreadable), parsed once for
    every rule that reads it. Callers must not mutate the tree."""
    try:
        with open(path, encoding="utf-8") as handle:
            return ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _defined_function(func: Callable[..., Any], path: str) -> ast.Module | None:
    """Return the ``def`` of ``func`` from its file's tree, alone in a module, or None when
    it cannot be told apart (a lambda, a nested or a redefined function)."""
    code = getattr(func, "__code__", None)
    tree = module_tree(path)
    if code is None or tree is None:
        return None
    name = getattr(func, "__name__", None)
    found = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name == name
        and (node.decorator_list[0].lineno if node.decorator_list else node.lineno)
        == code.co_firstlineno
    ]
    if len(found) != 1:
        return None
    return ast.Module(body=[found[0]], type_ignores=[])


@lru_cache(maxsize=2048)
def function_source(func: Callable[..., Any]) -> tuple[ast.AST | None, str | None, int | None]:
    """Return the parsed body of a RunPython function, its file, and the file's line that
    the tree's line 1 stands for: a node is on line ``first + node.lineno - 1``.

    A module-level function comes from its file's tree, shared with every other reader of
    the file (``first`` is then 1); anything else is read with ``inspect`` and parsed alone.
    Cached: several rules read the same function. Callers must not mutate the tree.
    """
    try:
        path = inspect.getsourcefile(func)
    except TypeError:
        return None, None, None
    if path is not None:
        defined = _defined_function(func, path)
        if defined is not None:
            return defined, path, 1
    try:
        lines, first = inspect.getsourcelines(func)
    except (OSError, TypeError):
        return None, None, None
    source = "".join(lines)
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None, path, first
    return tree, path, first
