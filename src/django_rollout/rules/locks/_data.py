"""What a data migration does to tables: read from the code of ``RunPython`` and ``RunSQL``.

The code is read, never run. A queryset is followed from its model (``apps.get_model`` or
an imported model class) through the names it is assigned to; a write is whole-table when
nothing narrows it: no ``filter()``/``exclude()`` with a lookup, no ``get()``, no slice (the
same as ``RunSQL``, where any ``WHERE`` narrows). Writes narrowed to single rows or pages
(a slice with an end; ``[1:]`` is every matching row but one) inside a loop are batches;
filtered writes are batches only inside a loop that walks a whole table (a ``while`` loop,
or a ``for`` over an unfiltered queryset).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import migrations

from django_rollout.graph.code import class_key, get_model_key
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import ModelKey
from django_rollout.graph.source import function_source
from django_rollout.rules.locks._statements import K, sql_actions, table_is_hot

_QUERYSET_WRITES = frozenset({"update", "delete"})
_OBJECT_WRITES = frozenset({"save", "delete"})
# Writes that change the existing rows they are given: whole-table when those come from a
# loop (or comprehension) over a whole queryset. Inserts (create, bulk_create) change no
# existing row and lock nothing the release is using: D205 judges them.
_MANAGER_WRITES = frozenset({"bulk_update", "update_or_create"})
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_ONE_ROW = frozenset({"pk", "id", "pk__in", "id__in"})
# Calls that return one object: a write through it changes that row only.
_ONE_OBJECT = frozenset({"get", "first", "last", "earliest", "latest", "create"})
_FILTERS = frozenset({"filter", "exclude"})
# How a queryset is narrowed: to single rows or a slice (how a batch loop walks a table), or
# by a filter (the rows that match). None: not at all, every row.
BATCH, FILTER = "batch", "filter"
# What a loop iterates, besides a narrowing of a queryset: not a queryset, or ``while``.
OTHER, WHILE = "other", "while"


@dataclass
class DataPass:
    """What one data operation does: the tables it writes and how."""

    tables: set[str] = field(default_factory=set)  # tables in S0 it writes
    touches_s0: bool = False  # reads or writes a table in S0 (or a table it cannot resolve)
    whole_table: bool = False  # one statement, or one loop, over a whole table
    batched: bool = False  # writes narrowed to slices or single rows inside a loop
    unknown: bool = False  # code that cannot be read
    rows: int | None = None

    @property
    def writes(self) -> bool:
        return bool(self.tables)


def _chain(node: ast.AST) -> Iterator[ast.AST]:
    """Yield the nodes of an attribute/call/subscript chain, outermost first."""
    while True:
        yield node
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        else:
            return


def _root(node: ast.AST) -> str | None:
    *_, last = _chain(node)
    return last.id if isinstance(last, ast.Name) else None


def _narrowing(node: ast.AST) -> str | None:
    """Return how a queryset chain is narrowed: ``BATCH`` when sliced to a page or filtered
    down to single rows by primary key, ``FILTER`` when filtered by any lookup or reduced to one
    object, None when it covers every row."""
    found: str | None = None
    for part in _chain(node):
        if isinstance(part, ast.Subscript) and isinstance(part.slice, ast.Slice):
            if part.slice.upper is not None:
                return BATCH
            # ``[1:]`` has no end: every row the rest of the chain selects but the first.
            continue
        if not (isinstance(part, ast.Call) and isinstance(part.func, ast.Attribute)):
            continue
        attr = part.func.attr
        if attr in ("filter", "get") and any(kw.arg in _ONE_ROW for kw in part.keywords):
            return BATCH
        if (attr in _FILTERS and (part.args or part.keywords)) or attr in _ONE_OBJECT:
            found = FILTER
    return found


_EMPTY_NAMES = frozenset({"None", "null", "JSONNull"})


def _is_empty(value: ast.AST) -> bool:
    """Return True for a value that means "not filled yet": '', None, JSON null, {}, []."""
    if isinstance(value, ast.Constant):
        return value.value in ("", None)
    if isinstance(value, ast.Name):
        return value.id in _EMPTY_NAMES
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        return value.func.id in _EMPTY_NAMES and not value.args
    return isinstance(value, ast.Dict | ast.List) and not (
        getattr(value, "keys", None) or getattr(value, "elts", None)
    )


def _unfilled_lookups(node: ast.AST) -> dict[str, bool]:
    """Map each field the ``filter()``/``exclude()`` calls of a chain look up to whether the
    lookup selects rows not filled yet (``col__isnull=True``, ``col=''``, ``col=None``)."""
    fields: dict[str, bool] = {}
    for part in _chain(node):
        if not (isinstance(part, ast.Call) and isinstance(part.func, ast.Attribute)):
            continue
        if part.func.attr != "filter":
            if part.func.attr == "exclude":
                fields.update({kw.arg.split("__")[0]: False for kw in part.keywords if kw.arg})
            continue
        for kw in part.keywords:
            if not kw.arg:
                continue
            name, _, lookup = kw.arg.partition("__")
            unfilled = (lookup == "isnull" and _is_true(kw.value)) or (
                lookup in ("", "exact") and _is_empty(kw.value)
            )
            fields[name] = fields.get(name, False) or unfilled
    return fields


def _is_true(value: ast.AST) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def _derived_from(value: ast.AST, column: str) -> bool:
    """Return True when an update value is computed from the column itself (Lower("email"))."""
    return any(
        isinstance(n, ast.Constant) and n.value == column
        for n in ast.walk(value)
        if isinstance(value, ast.Call)
    )


class _Reader(ast.NodeVisitor):
    def __init__(self, ctx: OperationContext) -> None:
        self.ctx = ctx
        self.unit = ctx.unit
        self.models: dict[str, ModelKey] = {}  # names bound to a model class
        # name -> (model name, narrowing)
        self.querysets: dict[str, tuple[str, str | None]] = {}
        # queryset name -> the fields it filters on, and whether each selects unfilled rows
        self.filtered_on: dict[str, dict[str, bool]] = {}
        # (model name iterated, its narrowing), or (None, OTHER/WHILE)
        self.loops: list[tuple[str | None, str | None]] = []
        self.result = DataPass()

    # names --------------------------------------------------------------------------------
    def _model_of(self, name: str | None) -> ModelKey | None:
        if name is None:
            return None
        if name in self.models:
            return self.models[name]
        if name in self.querysets:
            return self._model_of(self.querysets[name][0])
        return class_key(name, self.unit.state.models, self.ctx.app_label)

    def _qs_narrowing(self, node: ast.AST) -> str | None:
        root = _root(node)
        kinds = {self.querysets.get(root or "", ("", None))[1], _narrowing(node)}
        return BATCH if BATCH in kinds else FILTER if FILTER in kinds else None

    def _lookups(self, node: ast.AST) -> dict[str, bool]:
        return {**self.filtered_on.get(_root(node) or "", {}), **_unfilled_lookups(node)}

    def _backfill(self, node: ast.Call, queryset: ast.AST) -> bool:
        """Return True when an ``update()`` rewrites every row not yet in its new form.

        Its filter looks up only the columns it rewrites, and either selects the unfilled
        rows (``filter(col__isnull=True)``, ``filter(col="")``: a backfill of a column just
        added) or the update derives the column from itself (``update(email=Lower("email"))``:
        a normalisation). Either way the filter's reach is every row of the table not yet
        converted, which on a first run is the table. A remap of one value to another
        (``filter(code="edit").update(code="change")``) is selective and stays narrowed.
        """
        lookups = self._lookups(queryset)
        values = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        if not lookups or not set(lookups) <= set(values):
            return False
        return all(
            unfilled or _derived_from(values[name], name) for name, unfilled in lookups.items()
        )

    @staticmethod
    def _walks_table(loops: list[tuple[str | None, str | None]]) -> bool:
        """Return True if one of ``loops`` walks a whole table: a filtered write per
        iteration then adds up to every row."""
        return any(kind is None or kind == WHILE for _, kind in loops)

    def visit_Assign(self, node: ast.Assign) -> None:
        value = node.value
        key = get_model_key(value)
        for target in node.targets:
            if not isinstance(target, ast.Name):
                continue
            if key is not None:
                self.models[target.id] = key
            elif (root := _root(value)) is not None and self._model_of(root) is not None:
                model_name = self.querysets.get(root, (root, None))[0]
                self.querysets[target.id] = (model_name, self._qs_narrowing(value))
                self.filtered_on[target.id] = self._lookups(value)
        self.generic_visit(node)

    # reads and writes ---------------------------------------------------------------------
    def _touch(self, key: ModelKey | None, write: bool) -> None:
        if key is None:
            return
        if not self.unit.in_s0(key):
            return
        self.result.touches_s0 = True
        if write:
            model = self.unit.model_now(key) or self.unit.lineage.s0_model(key)
            if model is not None:
                self.result.tables.add(model.db_table)

    def visit_For(self, node: ast.For) -> None:
        root = _root(node.iter)
        key = self._model_of(root)
        self.loops.append((root, self._qs_narrowing(node.iter)) if key else (None, OTHER))
        self._touch(key, write=False)
        self.generic_visit(node)
        self.loops.pop()

    def _iterates_whole(self, node: ast.AST) -> bool:
        """Return True if ``node`` holds a comprehension over a whole queryset."""
        for inner in ast.walk(node):
            if isinstance(inner, _COMPREHENSIONS):
                for generator in inner.generators:
                    key = self._model_of(_root(generator.iter))
                    if key is not None:
                        self._touch(key, write=False)
                        if self._qs_narrowing(generator.iter) is None:
                            return True
        return False

    def visit_While(self, node: ast.While) -> None:
        self.loops.append((None, WHILE))
        self.generic_visit(node)
        self.loops.pop()

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            root = _root(func.value)
            key = self._model_of(root)
            in_loop = bool(self.loops)
            if key is not None:
                self._touch(key, write=False)
                if func.attr in _QUERYSET_WRITES | _MANAGER_WRITES:
                    self._touch(key, write=True)
                    kind = self._qs_narrowing(func.value)
                    backfill = func.attr == "update" and self._backfill(node, func.value)
                    if kind == FILTER and backfill:
                        kind = None
                    if func.attr in _MANAGER_WRITES:
                        # As whole as the loop or comprehension that feeds it.
                        whole = self._iterates_whole(node) or any(k is None for _, k in self.loops)
                        kind = None if whole else BATCH
                    if kind is None:
                        self.result.whole_table = True
                    elif in_loop and (kind == BATCH or self._walks_table(self.loops)):
                        self.result.batched = True
            elif func.attr in _OBJECT_WRITES and in_loop:
                # obj.save() inside a loop over a queryset: the loop decides.
                loop_root, kind = self.loops[-1]
                loop_key = self._model_of(loop_root)
                if loop_key is not None:
                    self._touch(loop_key, write=True)
                    outer = self.loops[:-1]
                    if kind is None and not outer:
                        self.result.whole_table = True
                    elif kind != FILTER or self._walks_table(outer):
                        self.result.batched = True
        self.generic_visit(node)


def read_pass(ctx: OperationContext) -> DataPass | None:
    """Return what a data operation does, or None when ``ctx`` is not one."""
    op = ctx.operation
    if not ctx.database:
        return None
    if isinstance(op, migrations.RunPython):
        if op.code is migrations.RunPython.noop:
            return None
        tree, _, _ = function_source(op.code)
        if tree is None:
            return DataPass(touches_s0=True, unknown=True)
        reader = _Reader(ctx)
        reader.visit(tree)
        result = reader.result
        if not reader.models and not reader.querysets and not result.touches_s0:
            # No model in sight: raw cursors, helpers in other modules. Unknown work.
            result.touches_s0 = True
            result.unknown = True
        result.rows = _rows(ctx, result.tables)
        return result
    if isinstance(op, migrations.RunSQL):
        result = DataPass()
        for action in sql_actions(ctx):
            if action.kind not in (K.UPDATE, K.DELETE, K.INSERT) or action.table is None:
                continue
            if not table_is_hot(ctx.unit, action.table):
                continue
            result.touches_s0 = True
            result.tables.add(action.table)
            if action.kind is not K.INSERT and not action.has_where:
                result.whole_table = True
        if not result.touches_s0:
            return None
        result.rows = _rows(ctx, result.tables)
        return result
    return None


def _rows(ctx: OperationContext, tables: set[str]) -> int | None:
    counts = [ctx.unit.rows(t) for t in tables]
    known = [c for c in counts if c is not None]
    return max(known) if known else None
