"""Read what a RunPython function does to which model, from its source (``ast``).

Only the forward function itself is read (not the helpers it calls, not ``reverse_code``).
Models are recognised where the code binds them with a literal
``apps.get_model("app", "Model")`` / ``apps.get_model("app.Model")``, or with a name the
function closes over or reads from its module that holds such a string (an operation class
that builds its forward function from a ``"app.Model"`` argument); a model looked up by a
computed name is unknown, and unknown models produce no facts (a rule never guesses a table).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django_rollout.graph.model import ModelKey
from django_rollout.graph.source import function_source

# Calls that write a new row with no conflict handling.
_INSERTS = frozenset({"create", "bulk_create"})
# Calls that return one existing row (its attributes then hold row data).
_FETCH_ONE = frozenset({"get", "first", "last", "latest", "earliest"})
# Exceptions whose handler makes a create a guarded one (look up first, or absorb the clash).
_LOOKUP_MISSES = frozenset({"DoesNotExist", "ObjectDoesNotExist"})
_CLASHES = frozenset({"IntegrityError"})
_CONFLICT_FLAGS = frozenset({"ignore_conflicts", "update_conflicts"})
# Functions that take a model or a row without writing it.
_HARMLESS = frozenset(
    {"isinstance", "issubclass", "len", "print", "repr", "str", "getattr", "hasattr", "type",
     "id", "list", "tuple", "set", "sorted", "iter", "next", "bool"}
)
# Field names meaning "every field" in CodeFacts.written: the code hands the model or its rows
# to something this module does not read (a helper function, ``update(**values)``, setattr).
ANY_FIELD = "*"


@dataclass(frozen=True)
class Lookup:
    """One row looked up by literal field values: ``codename__in=["a"]`` gives
    ``("codename", ("a",))``."""

    key: ModelKey
    values: tuple[tuple[str, tuple[str, ...]], ...]

    def literal(self, name: str) -> tuple[str, ...] | None:
        """Return the values the lookup pins ``name`` to, or None when it does not."""
        return dict(self.values).get(name)


@dataclass(frozen=True)
class Insert:
    """A plain insert of new rows into a model's table."""

    key: ModelKey
    line: int
    call: str  # how the code spells it, e.g. "Group.objects.create(...)"
    absorbed: bool = False  # inside try/except IntegrityError with no savepoint
    # The keyword values of each inserted row as the code spells them (``create(name=...)``,
    # ``Model(name=...)``, the element of ``bulk_create([Model(...) for ...])``); None when
    # the code does not show them (``bulk_create(objs)``, ``**values``).
    rows: tuple[Mapping[str, ast.expr], ...] | None = None
    # Variables bound, earlier in the function, to a row this function inserted
    # (``workflow = Workflow.objects.create(...)``), with the line of the insert.
    fresh: Mapping[str, int] = field(default_factory=dict)
    # Variables the insert reads whose nearest binding looks one row up by literal values
    # (``p = Permission.objects.get(codename="publish")``, ``get_or_create``, or a helper
    # function of the module that returns such a lookup): the model and the values.
    looked_up: Mapping[str, Lookup] = field(default_factory=dict)
    # True when the rows come from data (a loop or comprehension over rows, a query, a
    # cursor; or rows the code does not spell out); False for seed rows written once with
    # values the code spells (``create(name="editors")``, a loop over a literal list).
    copied: bool = True
    # The insert runs only after looking for the row with ``Model.objects.filter(...)`` on
    # these fields (the keywords' first segments, as spelled): it is safe only if every key
    # it can clash on holds them all. None: not guarded so (any other guard drops the insert).
    guard_fields: frozenset[str] | None = None


@dataclass(frozen=True)
class Rewrite:
    """A write of a value computed from existing row data into a field."""

    key: ModelKey
    field: str
    line: int
    call: str


@dataclass
class CodeFacts:
    """What one RunPython function does, as far as its own source tells."""

    path: str | None
    first_line: int | None
    models: dict[str, ModelKey] = field(default_factory=dict)  # variable -> model
    touched: set[ModelKey] = field(default_factory=set)  # every model looked up
    inserts: list[Insert] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    # Fields written into rows already in the table (``update(f=...)``, ``obj.f = ...`` then
    # ``save()``/``bulk_update``), per model; ANY_FIELD when the code may write any of them.
    written: dict[ModelKey, set[str]] = field(default_factory=dict)
    # Models whose every row the code deletes (``Model.objects.all().delete()``).
    emptied: set[ModelKey] = field(default_factory=set)


def _text(node: ast.AST, constants: Mapping[str, str]) -> str | None:
    """Return the string a literal, or a name bound to a string constant, spells."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _literal_model(
    call: ast.AST, app_label: str, constants: Mapping[str, str] | None = None
) -> ModelKey | None:
    """Return the model of a literal ``apps.get_model(...)`` call, else None."""
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "get_model"
    ):
        return None
    known = constants or {}
    args = [t for a in call.args if (t := _text(a, known)) is not None]
    for keyword in call.keywords:
        if keyword.arg in ("app_label", "model_name"):
            value = _text(keyword.value, known)
            if value is not None:
                args.append(value)
    if len(args) != len(call.args) + sum(1 for k in call.keywords if k.arg):
        return None
    if len(args) == 2:
        return (args[0], args[1].lower())
    if len(args) == 1 and "." in args[0]:
        app, _, name = args[0].partition(".")
        return (app, name.lower())
    return None


def _root(node: ast.AST) -> ast.AST:
    """Return the start of an attribute/call chain: ``X`` in ``X.objects.filter().update``."""
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) != "get_model":
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return node


def _unfiltered(node: ast.AST) -> bool:
    """Return True when a queryset chain selects every row: ``X.objects.all()``, and
    ``filter()``/``exclude()`` without conditions."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        if isinstance(node, ast.Subscript):
            return False  # a slice
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Attribute):
                return False
            if node.func.attr == "all" or (
                node.func.attr in ("filter", "exclude") and not node.args and not node.keywords
            ):
                node = node.func.value
                continue
            return False
        node = node.value
    return True


def _chain_has(node: ast.AST, names: frozenset[str]) -> bool:
    """Return True when a method of ``names`` is called somewhere along the chain."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in names:
                return True
            node = node.func.value
        elif isinstance(node, ast.Call):
            return False
        else:
            node = node.value
    return False


def _spelled(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


# What a lookup chain may end in and still only ask whether matching rows exist.
_PRESENCE = frozenset({"filter", "exists", "count", "first", "last"})


def _filtered_fields(test: ast.AST, model_names: set[str]) -> frozenset[str] | None:
    """Return the fields an ``if`` test looks the model up by, when it does so in exactly one
    chain ``M.objects.filter(k=v, ...)[.filter(...)][.exists()|.count()|.first()|.last()]``
    with keyword arguments only; None for any other test (``Q`` objects, ``exclude``,
    ``**kwargs``, a lookup through a variable, two lookups)."""
    found: list[frozenset[str] | None] = []
    inner: set[int] = set()
    for node in ast.walk(test):  # breadth first: a chain's outermost call comes first
        if not isinstance(node, ast.Call) or id(node) in inner:
            continue
        fields: set[str] = set()
        plain = True
        call: ast.AST = node
        while isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            inner.add(id(call))
            keywords = call.keywords
            if call.func.attr not in _PRESENCE or call.args or any(k.arg is None for k in keywords):
                plain = False
            fields.update(k.arg.split("__")[0] for k in keywords if k.arg)
            call = call.func.value
        if (
            isinstance(call, ast.Attribute)
            and call.attr == "objects"
            and isinstance(call.value, ast.Name)
            and call.value.id in model_names
        ):
            found.append(frozenset(fields) if plain and fields else None)
    return found[0] if len(found) == 1 else None


def _derived(value: ast.AST, row_vars: set[str], own: str | None = None) -> bool:
    """Return True when ``value`` is computed from data already in the row.

    Python side: it reads an attribute of the row (``u.email.lower()``, ``slugify(p.title)``).
    ORM side: it is an expression over columns (``Lower("email")``, ``F("code")``), i.e. a
    call taking a column name, other than ``Value(...)``.
    """
    if isinstance(value, ast.Constant):
        return False
    if own is not None:
        if (
            isinstance(value, ast.Attribute)
            and isinstance(value.value, ast.Name)
            and value.value.id in row_vars
            and value.attr == own
        ):
            return False  # obj.email = obj.email
        return any(
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id in row_vars
            for n in ast.walk(value)
        )
    for n in ast.walk(value):
        if not isinstance(n, ast.Call):
            continue
        callee = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
        if callee == "Value":
            continue
        if any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in n.args):
            return True
    return False


def _selects_missing(query: ast.AST) -> bool:
    """Return True for a loop over rows selected for lacking a related row: an anti-join
    such as ``Order.objects.filter(invoices__isnull=True)`` guards the inserts it drives."""
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("filter", "exclude")
        and any((k.arg or "").endswith("__isnull") for k in n.keywords)
        for n in ast.walk(query)
    )


def _names_exception(node: ast.AST | None, names: frozenset[str]) -> bool:
    return node is not None and any(
        getattr(n, "attr", getattr(n, "id", None)) in names for n in ast.walk(node)
    )


def _opens_savepoint(node: ast.With) -> bool:
    """Return True for ``with transaction.atomic():`` (a savepoint inside the migration)."""
    return any(
        isinstance(item.context_expr, ast.Call)
        and getattr(item.context_expr.func, "attr", getattr(item.context_expr.func, "id", ""))
        == "atomic"
        for item in node.items
    )


def _suppresses_clash(node: ast.With) -> bool:
    """Return True for ``with contextlib.suppress(IntegrityError):``."""
    return any(
        isinstance(item.context_expr, ast.Call)
        and getattr(item.context_expr.func, "attr", getattr(item.context_expr.func, "id", ""))
        == "suppress"
        and _names_exception(item.context_expr, _CLASHES)
        for item in node.items
    )


def _is_identity(value: ast.AST, name: str) -> bool:
    return (
        isinstance(value, ast.Call)
        and getattr(value.func, "id", getattr(value.func, "attr", "")) == "F"
        and len(value.args) == 1
        and isinstance(value.args[0], ast.Constant)
        and value.args[0].value == name
    )


class _Reader:
    def __init__(
        self,
        tree: ast.AST,
        app_label: str,
        facts: CodeFacts,
        constants: Mapping[str, str] | None = None,
        func: Callable[..., Any] | None = None,
        depth: int = 0,
    ) -> None:
        self.tree = tree
        # The module globals of the function read, to follow its helper functions (one
        # level deep: ``depth`` counts how far this reader is from the RunPython code).
        self.globals: Mapping[str, Any] = getattr(func, "__globals__", None) or {}
        self.depth = depth
        self.app_label = app_label
        self.facts = facts
        self.constants: Mapping[str, str] = constants or {}
        # One traversal: every pass below reads this list, in ast.walk's order.
        self.nodes: list[ast.AST] = [tree]
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in self.nodes:  # grows while it is read: a breadth-first walk
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
                self.nodes.append(child)
        self.instances: dict[str, ModelKey] = {}  # new, unsaved objects: obj = Model(...)
        self.row_vars: dict[str, ModelKey] = {}  # existing rows: for obj in Model.objects...
        self.saved: set[str] = set()
        self.bulk_updated: dict[ModelKey, set[str]] = {}
        self.instance_rows: dict[str, Mapping[str, ast.expr] | None] = {}

    def line(self, node: ast.AST) -> int:
        return (self.facts.first_line or 1) + getattr(node, "lineno", 1) - 1

    def model_of(self, node: ast.AST) -> ModelKey | None:
        root = _root(node)
        if isinstance(root, ast.Name):
            return self.facts.models.get(root.id)
        return _literal_model(root, self.app_label, self.constants)

    def read(self) -> None:
        # Bind model variables first: they are used anywhere below their assignment.
        for node in self.nodes:
            if isinstance(node, ast.Call) and (
                key := _literal_model(node, self.app_label, self.constants)
            ):
                self.facts.touched.add(key)
            if isinstance(node, ast.Assign):
                self._bind(node.targets, node.value)
        for node in self.nodes:
            if isinstance(node, ast.For):
                key = self.model_of(node.iter)
                if key is not None and isinstance(node.target, ast.Name):
                    self.row_vars[node.target.id] = key
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and isinstance(node.value, ast.Call):
                    self._bind_row(target.id, node.value)
        for node in self.nodes:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                self._call(node)
            elif isinstance(node, ast.Call):
                self._opaque(node)
        for node in self.nodes:
            if isinstance(node, ast.Assign):
                self._assign(node)

    def _write(self, key: ModelKey, name: str | None) -> None:
        self.facts.written.setdefault(key, set()).add(name or ANY_FIELD)

    def _row_names(self, rows: tuple[Mapping[str, ast.expr], ...] | None) -> set[str]:
        return {
            n.id
            for row in rows or ()
            for value in row.values()
            for n in ast.walk(value)
            if isinstance(n, ast.Name)
        }

    def _fresh_names(
        self, node: ast.AST, rows: tuple[Mapping[str, ast.expr], ...] | None
    ) -> dict[str, int]:
        """Return the variables the insert at ``node`` reads that hold, at that point, a row
        this function inserted (``x = M.objects.create(...)`` is their nearest binding):
        a key holding one cannot exist anywhere before the insert."""
        fresh: dict[str, int] = {}
        for name in self._row_names(rows):
            bound = self._nearest_binding(node, name)
            if bound is not None and not bound[2] and self._creates(bound[1]):
                fresh[name] = self.line(bound[0])
        return fresh

    def _looked_up_names(
        self, node: ast.AST, rows: tuple[Mapping[str, ast.expr], ...] | None
    ) -> dict[str, Lookup]:
        """Return the variables the insert at ``node`` reads whose nearest binding looks one
        row up by literal values (directly, or through a helper function of the module)."""
        found: dict[str, Lookup] = {}
        for name in self._row_names(rows):
            bound = self._nearest_binding(node, name)
            if bound is None:
                continue
            _, value, iterated = bound
            lookup = self._lookup(value, iterated) or self._helper_lookup(value, iterated)
            if lookup is not None:
                found[name] = lookup
        return found

    def _lookup(self, value: ast.AST, many: bool = False) -> Lookup | None:
        """Return the lookup ``M.objects.get(f="x")``, ``.filter(f__in=["x"]).first()`` or
        ``.get_or_create(f="x")`` spells, when every filter is a literal. With ``many`` (a
        loop variable over it), ``M.objects.filter(...)`` itself: each row it yields."""
        if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
            return None
        method = value.func.attr
        call = value
        if method in ("first", "last", "latest", "earliest") and not value.args:
            inner = value.func.value
            if not (
                isinstance(inner, ast.Call)
                and isinstance(inner.func, ast.Attribute)
                and inner.func.attr == "filter"
            ):
                return None
            call = inner
        elif method not in ("get", "get_or_create") and not (many and method == "filter"):
            return None
        assert isinstance(call.func, ast.Attribute)
        key = self.model_of(call.func.value)
        keywords = _keywords(call)
        if key is None or keywords is None or call.args or not keywords:
            return None
        values: list[tuple[str, tuple[str, ...]]] = []
        for spelled, node in keywords.items():
            if spelled == "defaults":
                continue
            name, _, op = spelled.partition("__")
            if op == "in" and isinstance(node, ast.List | ast.Tuple | ast.Set):
                texts = [_text(e, self.constants) for e in node.elts]
            elif not op:
                texts = [_text(node, self.constants)]
            else:
                texts = [None]
            if any(t is None for t in texts):
                values.append((name, ()))  # a filter the reader cannot pin
                continue
            values.append((name, tuple(str(t) for t in texts)))
        return Lookup(key, tuple(values))

    def _helper_lookup(self, value: ast.AST, many: bool = False) -> Lookup | None:
        """Return the lookup a helper function of the module returns, one call deep:
        ``permission = get_permission(apps)`` where the helper ends in ``return
        Permission.objects.filter(codename__in=[...]).first()``."""
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
            return None
        helper = self.globals.get(value.func.id)
        if not inspect.isfunction(helper) or self.depth > 0:
            return None
        tree, _, _ = function_source(helper)
        if tree is None:
            return None
        reader = _Reader(
            tree, self.app_label, CodeFacts(None, None), _constants(helper), helper, self.depth + 1
        )
        for node in reader.nodes:
            if isinstance(node, ast.Assign):
                reader._bind(node.targets, node.value)
        returns = [
            n.value
            for n in reader.nodes
            if isinstance(n, ast.Return) and n.value is not None
            and not (isinstance(n.value, ast.Constant) and n.value.value is None)
        ]
        if len(returns) != 1:
            return None
        return reader._lookup(returns[0], many)

    def _nearest_binding(
        self, node: ast.AST, name: str
    ) -> tuple[ast.stmt, ast.expr, bool] | None:
        """Return the statement and value ``name`` was last bound to before ``node``, and
        whether it iterates that value (``for name in value:``); None when its nearest
        binding is anything else (a branch, ``with ... as``, a parameter).
        ``x, created = M.objects.get_or_create(...)`` binds ``x`` to the call."""
        child = node
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.Lambda):
            if (
                isinstance(parent, ast.For)
                and isinstance(parent.target, ast.Name)
                and parent.target.id == name
                and child in parent.body
            ):
                return parent, parent.iter, True
            if _binds_around(parent, name):
                return None  # a loop variable, ``with ... as``, ``except ... as``
            for attr in ("body", "orelse", "finalbody"):
                block = getattr(parent, attr, None)
                if not isinstance(block, list) or child not in block:
                    continue
                for stmt in reversed(block[: block.index(child)]):
                    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                        target = stmt.targets[0]
                        if isinstance(target, ast.Name) and target.id == name:
                            return stmt, stmt.value, False
                        if (
                            isinstance(target, ast.Tuple)
                            and target.elts
                            and isinstance(target.elts[0], ast.Name)
                            and target.elts[0].id == name
                            and isinstance(stmt.value, ast.Call)
                            and isinstance(stmt.value.func, ast.Attribute)
                            and stmt.value.func.attr == "get_or_create"
                        ):
                            return stmt, stmt.value, False
                    if any(
                        isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
                        for n in ast.walk(stmt)
                    ):
                        return None
            if isinstance(parent, ast.FunctionDef):
                return None  # the function's own body: nothing binds it before
            child, parent = parent, self.parents.get(parent)
        return None

    def _creates(self, value: ast.AST) -> bool:
        if not isinstance(value, ast.Call):
            return False
        if isinstance(value.func, ast.Name):
            return value.func.id in self.facts.models and not any(
                k.arg in ("pk", "id") for k in value.keywords
            )
        return (
            isinstance(value.func, ast.Attribute)
            and value.func.attr == "create"
            and self.model_of(value.func.value) is not None
        )

    def _opaque(self, node: ast.Call) -> None:
        """Record a model, or one of its rows, handed to a function this module does not read
        (``bootstrap(Page, locale)``): it may write any field of existing rows."""
        callee = getattr(node.func, "id", "")
        if callee in _HARMLESS:
            return
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Starred):
                arg = arg.value
            if not isinstance(arg, ast.Name):
                continue
            key = self.facts.models.get(arg.id) or self.row_vars.get(arg.id)
            if key is not None:
                self._write(key, None)

    def _bind(self, targets: list[ast.expr], value: ast.expr) -> None:
        for target in targets:
            if isinstance(target, ast.Name):
                if key := _literal_model(value, self.app_label, self.constants):
                    self.facts.models[target.id] = key
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                for t, v in zip(target.elts, value.elts, strict=False):
                    self._bind([t], v)

    def _bind_row(self, name: str, value: ast.Call) -> None:
        if isinstance(value.func, ast.Name) and value.func.id in self.facts.models:
            explicit_pk = any(k.arg in ("pk", "id") for k in value.keywords)
            if not explicit_pk:  # with a pk, save() runs UPDATE and inserts only if missing
                self.instances[name] = self.facts.models[value.func.id]
                self.instance_rows[name] = _keywords(value)
        elif (
            isinstance(value.func, ast.Attribute)
            and value.func.attr in _FETCH_ONE
            and (key := self.model_of(value.func.value)) is not None
        ):
            self.row_vars[name] = key

    def _call(self, node: ast.Call) -> None:
        assert isinstance(node.func, ast.Attribute)
        method = node.func.attr
        receiver = node.func.value
        if method == "save":
            if isinstance(receiver, ast.Name):
                self.saved.add(receiver.id)
                if receiver.id in self.instances:
                    row = self.instance_rows.get(receiver.id)
                    self._insert(
                        self.instances[receiver.id],
                        node,
                        {receiver.id},
                        None if row is None else (row,),
                    )
            elif isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name):
                key = self.facts.models.get(receiver.func.id)
                explicit_pk = any(k.arg in ("pk", "id") for k in receiver.keywords)
                if key is not None and not explicit_pk:
                    row = _keywords(receiver)
                    self._insert(
                        key, node, {receiver.func.id}, None if row is None else (row,)
                    )
            return
        key = self.model_of(receiver)
        if key is None or receiver is _root(receiver):
            return
        if method in _INSERTS:
            if method == "bulk_create" and self._handles_conflicts(node):
                return
            root = _root(receiver)
            names = {root.id} if isinstance(root, ast.Name) else set()
            self._insert(key, node, names, self._rows(method, node))
        elif method == "update":
            for keyword in node.keywords:
                if keyword.arg is None:
                    self._write(key, None)
                    continue
                if _is_identity(keyword.value, keyword.arg):
                    continue
                self._write(key, keyword.arg)
                if _derived(keyword.value, set()):
                    self.facts.rewrites.append(
                        Rewrite(key, keyword.arg, self.line(node), _spelled(node))
                    )
        elif method == "delete" and not node.args and _unfiltered(receiver):
            self.facts.emptied.add(key)
        elif method == "bulk_update" and len(node.args) >= 2:
            fields = node.args[1]
            if isinstance(fields, ast.List | ast.Tuple):
                for element in fields.elts:
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        self.bulk_updated.setdefault(key, set()).add(element.value)
                        self._write(key, element.value)
                    else:
                        self._write(key, None)
            else:
                self._write(key, None)

    def _rows(self, method: str, node: ast.Call) -> tuple[Mapping[str, ast.expr], ...] | None:
        """Return the keyword values of the rows an insert call writes, when it spells them."""
        if method == "create":
            row = _keywords(node)
            return None if row is None else (row,)
        if not node.args:
            return None
        objs = node.args[0]
        if isinstance(objs, ast.ListComp | ast.GeneratorExp):
            elements: list[ast.expr] = [objs.elt]
        elif isinstance(objs, ast.List | ast.Tuple):
            elements = list(objs.elts)
        else:
            return None
        rows: list[Mapping[str, ast.expr]] = []
        for element in elements:
            if not (
                isinstance(element, ast.Call)
                and isinstance(element.func, ast.Name)
                and element.func.id in self.facts.models
            ):
                return None
            row = _keywords(element)
            if row is None:
                return None
            rows.append(row)
        return tuple(rows)

    def _assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)):
                continue
            var = target.value.id
            key = self.row_vars.get(var)
            if key is None:
                continue
            written = var in self.saved or target.attr in self.bulk_updated.get(key, set())
            if not written:
                continue
            self._write(key, target.attr)
            if _derived(node.value, {var}, own=target.attr):
                self.facts.rewrites.append(
                    Rewrite(key, target.attr, self.line(node), _spelled(node))
                )

    def _handles_conflicts(self, node: ast.Call) -> bool:
        for keyword in node.keywords:
            if keyword.arg is None:
                return True  # **options may carry ignore_conflicts: do not guess
            if keyword.arg in _CONFLICT_FLAGS:
                value = keyword.value
                return not (isinstance(value, ast.Constant) and not value.value)
        return False

    def _guard(self, node: ast.AST, names: set[str]) -> tuple[str | None, frozenset[str] | None]:
        """Return how the insert is guarded: ``"looked-up"`` when it runs only after looking
        for the row (an ``if`` whose test queries the model, an ``except DoesNotExist``, a
        loop over rows selected for lacking one) or absorbs a clash inside a savepoint;
        ``"absorbed"`` when it swallows ``IntegrityError`` with no savepoint; else None.
        Second: the fields of the lookup, when the nearest guard is an ``if`` that filters
        the model by keywords only (``if not M.objects.filter(a=..., b=...).exists()``)."""
        model_names = names | {n for n, k in self.facts.models.items() if k in self._keys(names)}
        savepoint = False
        child = node
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.FunctionDef | ast.Lambda):
            if isinstance(parent, ast.With) and _opens_savepoint(parent):
                savepoint = True
            if (
                isinstance(parent, ast.If | ast.While)
                and child is not parent.test
                and (_mentions(parent.test, model_names) or self._queries(parent.test))
            ):
                return "looked-up", _filtered_fields(parent.test, model_names)
            if (
                isinstance(parent, ast.For)
                and child is not parent.iter
                and _selects_missing(parent.iter)
            ):
                return "looked-up", None
            if isinstance(parent, ast.ExceptHandler) and _names_exception(
                parent.type, _LOOKUP_MISSES
            ):
                return "looked-up", None
            absorbs = (
                isinstance(parent, ast.Try)
                and child in parent.body
                and any(_names_exception(h.type, _CLASHES) for h in parent.handlers)
            ) or (isinstance(parent, ast.With) and _suppresses_clash(parent))
            if absorbs:
                return ("looked-up" if savepoint else "absorbed"), None
            child, parent = parent, self.parents.get(parent)
        return None, None

    def _keys(self, names: set[str]) -> set[ModelKey]:
        return {self.facts.models[n] for n in names if n in self.facts.models}

    def _queries(self, test: ast.AST) -> bool:
        # ``if not exists:`` where ``exists = Model.objects.filter(...).exists()`` earlier.
        return any(
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("exists", "count", "filter", "get", "first")
            for n in ast.walk(test)
        )

    def _insert(
        self,
        key: ModelKey,
        node: ast.AST,
        names: set[str],
        rows: tuple[Mapping[str, ast.expr], ...] | None = None,
    ) -> None:
        guard, guard_fields = self._guard(node, names)
        if guard == "looked-up" and guard_fields is None:
            return
        line = self.line(node)
        insert = Insert(
            key,
            line,
            _spelled(node),
            absorbed=guard == "absorbed",
            rows=rows,
            fresh=self._fresh_names(node, rows),
            looked_up=self._looked_up_names(node, rows),
            copied=rows is None or self._driven_by_data(node),
            guard_fields=guard_fields,
        )
        self.facts.inserts.append(insert)

    def _driven_by_data(self, node: ast.AST) -> bool:
        """Return True when the insert at ``node`` runs once per item of data: inside a loop
        or comprehension over anything but a literal collection or ``range()``, or a
        ``bulk_create`` of such a comprehension."""
        iterables: list[ast.AST] = []
        if isinstance(node, ast.Call) and node.args:
            objs = node.args[0]
            if isinstance(objs, ast.ListComp | ast.GeneratorExp | ast.SetComp):
                iterables.extend(g.iter for g in objs.generators)
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.FunctionDef | ast.Lambda):
            if isinstance(parent, ast.For | ast.AsyncFor):
                iterables.append(parent.iter)
            elif isinstance(parent, ast.While):
                return True
            elif isinstance(parent, ast.ListComp | ast.GeneratorExp | ast.SetComp):
                iterables.extend(g.iter for g in parent.generators)
            parent = self.parents.get(parent)
        return any(not _literal_items(i) for i in iterables)


def _literal_items(node: ast.AST) -> bool:
    """Return True for a collection spelled out in the code (constants, or tuples of them,
    ``.items()`` of a literal dict) or ``range(...)``: iterating it writes seed rows."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        return True
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("items", "keys", "values")
    ):
        node = node.func.value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_literal_items(e) or isinstance(e, ast.Constant) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(isinstance(k, ast.Constant) for k in node.keys)
    return False


def _binds_around(node: ast.AST, name: str) -> bool:
    """Return True when ``node`` binds ``name`` for the statements it encloses."""
    targets: list[ast.AST] = []
    if isinstance(node, ast.For | ast.AsyncFor):
        targets.append(node.target)
    elif isinstance(node, ast.With | ast.AsyncWith):
        targets.extend(i.optional_vars for i in node.items if i.optional_vars is not None)
    elif isinstance(node, ast.ExceptHandler) and node.name == name:
        return True
    elif isinstance(node, ast.comprehension):
        targets.append(node.target)
    return any(
        isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)
    )


def _keywords(call: ast.Call) -> Mapping[str, ast.expr] | None:
    """Return a call's keyword arguments by name, None when ``**values`` hides some."""
    if any(k.arg is None for k in call.keywords):
        return None
    return {str(k.arg): k.value for k in call.keywords}


def _constants(func: Callable[..., Any]) -> dict[str, str]:
    """Return the string constants ``func`` can read by name: its closure, its module."""
    found: dict[str, str] = {}
    code = getattr(func, "__code__", None)
    module = getattr(func, "__globals__", None) or {}
    if code is not None:
        for name in code.co_names:
            value = module.get(name)
            if isinstance(value, str):
                found[name] = value
        cells = getattr(func, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, cells, strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, str):
                found[name] = value
    return found


@lru_cache(maxsize=256)
def code_facts(func: Callable[..., Any], app_label: str) -> CodeFacts | None:
    """Return what the RunPython function ``func`` does, or None without readable source."""
    tree, path, first = function_source(func)
    if tree is None:
        return None
    facts = CodeFacts(path, first)
    _Reader(tree, app_label, facts, _constants(func), func).read()
    return facts


def forward_facts(operation: Any, app_label: str) -> CodeFacts | None:
    """Return the facts of a RunPython's forward code (``reverse_code`` is not judged)."""
    code = getattr(operation, "code", None)
    if code is None:
        return None
    try:
        return code_facts(code, app_label)
    except TypeError:  # an unhashable callable
        return None
