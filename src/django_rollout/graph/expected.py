"""What each migration's database operations leave in the schema, fact by fact.

``doctor`` compares these facts with a live database. They follow the *database* operations,
not the model state: ``SeparateDatabaseAndState`` contributes its ``database_operations``
only, so a column that a state-only removal leaves behind is still expected, and a model
adopted by a state-only ``CreateModel`` expects nothing until the database is told to change.
A second ProjectState (the database's view) is carried through the plan beside the model
state; each operation is applied to both and the facts of the tables it touched are compared
before and after. Nothing here connects: column types come from an offline connection.

A fact is identified by its definition (kind, table, columns), never by a constraint or index
name, since names differ with the path that made them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState, ProjectState

from django_rollout.graph.model import ModelKey, column_name, related_key, resolve_key
from django_rollout.graph.runsql import parse_sql_safe
from django_rollout.graph.walk import WalkState
from django_rollout.vendors.base import StatementKind

MigrationKey = tuple[str, str]
FactKey = tuple[Any, ...]

TABLE = "table"
COLUMN = "column"
INDEX = "index"
UNIQUE = "unique"
FOREIGN_KEY = "foreign key"
CHECK = "check"


@dataclass(frozen=True)
class Fact:
    """One observable thing in the schema: a table, a column, an index or a constraint.

    ``null`` and ``type`` (columns) and ``references`` (foreign keys) are the value; ``key``
    is the identity. ``None`` for an attribute means "not known", never compared.
    """

    kind: str
    table: str
    columns: tuple[str, ...] = ()
    partial: bool = False
    null: bool | None = None
    type: str | None = None
    references: tuple[str, str] | None = None

    @property
    def key(self) -> FactKey:
        return (self.kind, self.table, self.columns, self.partial)

    def describe(self) -> str:
        cols = ", ".join(self.columns)
        if self.kind == TABLE:
            return f"table `{self.table}`"
        if self.kind == COLUMN:
            nullity = "" if self.null is None else (" NULL" if self.null else " NOT NULL")
            kind = f" {self.type}" if self.type else ""
            return f"column `{self.table}.{cols}`{kind}{nullity}"
        partial = " partial" if self.partial else ""
        what = f"{partial} {self.kind}".strip()
        if self.kind == FOREIGN_KEY and self.references:
            return f"{what} `{self.table}({cols})` -> `{self.references[0]}({self.references[1]})`"
        return f"{what} on `{self.table}({cols})`"


@dataclass(frozen=True)
class Change:
    """A fact one operation created, altered (``before`` and ``after``) or removed."""

    key: FactKey
    before: Fact | None
    after: Fact | None


@dataclass
class OperationEffect:
    index: int
    name: str
    changes: list[Change] = field(default_factory=list)
    # Why the operation's effect cannot be seen in the schema (data, opaque SQL, no change).
    unobservable: str | None = None


@dataclass
class MigrationEffects:
    key: MigrationKey
    atomic: bool
    operations: list[OperationEffect] = field(default_factory=list)

    def changes(self) -> Iterator[tuple[int, Change]]:
        for op in self.operations:
            for change in op.changes:
                yield op.index, change


# --- facts of one model --------------------------------------------------------------------


def _db_table(state: ModelState) -> str:
    table = state.options.get("db_table")
    return str(table) if table else f"{state.app_label}_{state.name_lower}"


def _owns_table(state: ModelState) -> bool:
    return bool(state.options.get("managed", True)) and not state.options.get("proxy", False)


def _target(state: ProjectState, owner: ModelState, f: models.Field[Any, Any]) -> Any:
    """Return (target ModelState, target field name) of a relation, or None."""
    key = related_key(f, owner.app_label)
    if key is None:  # "self"
        key = (owner.app_label, owner.name_lower)
    target = state.models.get(key)
    if target is None:
        return None
    to_field = getattr(f.remote_field, "field_name", None)
    if to_field and to_field in target.fields:
        return target, to_field
    for name, candidate in target.fields.items():
        if getattr(candidate, "primary_key", False):
            return target, name
    return target, "id"


def _type(
    f: models.Field[Any, Any], state: ProjectState, owner: ModelState, conn: Any
) -> str | None:
    if conn is None:
        return None
    try:
        if f.is_relation and (f.many_to_one or f.one_to_one):
            found = _target(state, owner, f)
            if found is None:
                return None
            target, name = found
            tfield = target.fields.get(name)
            return None if tfield is None else _canonical(tfield.rel_db_type(conn))
        return _canonical(f.db_type(conn))
    except Exception:  # noqa: BLE001 - a custom field that needs a bound model: type unknown
        return None


def _canonical(text: str | None) -> str | None:
    if not text:
        return None
    from django_rollout.db.introspect import canonical_type

    return canonical_type(text)


def _condition_columns(condition: object, state: ModelState) -> tuple[str, ...] | None:
    """Return the sorted columns a ``Q`` names, or None when it holds an expression."""
    names: set[str] = set()

    def walk(node: object) -> bool:
        if isinstance(node, models.Q):
            return all(walk(child) for child in node.children)
        if isinstance(node, tuple) and len(node) == 2:
            name = str(node[0]).split("__")[0]
            if name not in state.fields or isinstance(node[1], models.expressions.Combinable):
                return False
            names.add(name)
            return True
        return False

    if not walk(condition):
        return None
    cols = [column_name(n, state.fields[n]) for n in names]
    return tuple(sorted(c for c in cols if c))


def model_facts(state: ProjectState, key: ModelKey, conn: Any, vendor: str) -> dict[FactKey, Fact]:
    """Return the schema facts of one model as the database's state holds it."""
    ms = state.models.get(key)
    if ms is None or not _owns_table(ms):
        return {}
    table = _db_table(ms)
    out: dict[FactKey, Fact] = {}

    def add(fact: Fact) -> None:
        out[fact.key] = fact

    def cols(fields: Iterable[str]) -> tuple[str, ...] | None:
        found = []
        for name in fields:
            name = name.lstrip("-")
            f = ms.fields.get(name)
            col = None if f is None else column_name(name, f)
            if col is None:
                return None
            found.append(col)
        return tuple(found)

    add(Fact(TABLE, table))
    for name, f in ms.fields.items():
        if f.many_to_many:
            _m2m_facts(state, ms, name, f, table, add)
            continue
        col = column_name(name, f)
        if col is None or getattr(f, "generated", False):
            continue
        add(Fact(COLUMN, table, (col,), null=bool(f.null), type=_type(f, state, ms, conn)))
        if f.primary_key or f.unique:
            add(Fact(UNIQUE, table, (col,)))
        elif f.db_index:
            add(Fact(INDEX, table, (col,)))
        if f.is_relation and (f.many_to_one or f.one_to_one) and f.db_constraint:
            found = _target(state, ms, f)
            if found is not None and _owns_table(found[0]):
                target, tname = found
                tcol = column_name(tname, target.fields[tname]) if tname in target.fields else None
                if tcol:
                    add(Fact(FOREIGN_KEY, table, (col,), references=(_db_table(target), tcol)))
        if vendor == "postgresql" and conn is not None and f.db_check(conn):
            add(Fact(CHECK, table, (col,)))
    for together in ms.options.get("unique_together") or ():
        found_cols = cols(together)
        if found_cols:
            add(Fact(UNIQUE, table, found_cols))
    for index in ms.options.get("indexes") or ():
        if getattr(index, "expressions", None) or not index.fields:
            continue  # an expression index: its definition is not comparable by columns
        found_cols = cols(index.fields)
        if found_cols:
            add(Fact(INDEX, table, found_cols, partial=index.condition is not None))
    for constraint in ms.options.get("constraints") or ():
        if isinstance(constraint, models.UniqueConstraint):
            if constraint.expressions or not constraint.fields:
                continue
            found_cols = cols(constraint.fields)
            if found_cols:
                add(Fact(UNIQUE, table, found_cols, partial=constraint.condition is not None))
        elif isinstance(constraint, models.CheckConstraint) and vendor == "postgresql":
            condition = getattr(constraint, "condition", None) or getattr(constraint, "check", None)
            found_cols = _condition_columns(condition, ms)
            if found_cols:
                add(Fact(CHECK, table, found_cols))
    return out


def _m2m_facts(
    state: ProjectState, ms: ModelState, name: str, f: Any, table: str, add: Any
) -> None:
    through = getattr(f.remote_field, "through", None)
    if through is not None:
        return  # an explicit through model has its own state and facts
    target_key = related_key(f, ms.app_label) or (ms.app_label, ms.name_lower)
    target = state.models.get(target_key)
    if target is None:
        return
    m2m_table = f.db_table or f"{table}_{name}"
    own, other = ms.name_lower, target.name_lower
    if own == other:
        own, other = f"from_{own}", f"to_{other}"
    add(Fact(TABLE, m2m_table))
    for model, col in ((ms, f"{own}_id"), (target, f"{other}_id")):
        add(Fact(COLUMN, m2m_table, (col,), null=False))
        add(Fact(FOREIGN_KEY, m2m_table, (col,), references=(_db_table(model), "id")))
    add(Fact(UNIQUE, m2m_table, (f"{own}_id", f"{other}_id")))


# --- which models an operation touches -----------------------------------------------------


def _referencing(state: ProjectState, key: ModelKey) -> set[ModelKey]:
    found = set()
    for other_key, other in state.models.items():
        for f in other.fields.values():
            if f.is_relation and (related_key(f, other.app_label) or other_key) == key:
                found.add(other_key)
                break
    return found


def _touched(op: Operation, app_label: str, state: ProjectState) -> set[ModelKey]:
    keys: set[ModelKey] = set()
    if isinstance(op, migrations.RenameModel):
        old, new = (app_label, op.old_name_lower), (app_label, op.new_name_lower)
        keys |= {old, new} | _referencing(state, old)
        return keys
    model = getattr(op, "model_name_lower", None) or getattr(op, "name_lower", None)
    if model is None:
        return keys
    key = (app_label, model)
    keys.add(key)
    if isinstance(op, migrations.AlterModelTable | migrations.DeleteModel):
        keys |= _referencing(state, key)
    elif isinstance(op, migrations.AlterField | migrations.RenameField):
        ms = state.models.get(key)
        field_name = getattr(op, "name", None) or getattr(op, "old_name", None)
        was = None if ms is None else ms.fields.get(field_name)
        becomes = getattr(op, "field", None)
        if was is None or was.primary_key or was.unique or getattr(becomes, "primary_key", False):
            keys |= _referencing(state, key)
    if isinstance(op, migrations.CreateModel):
        for _, f in op.fields:
            if f.many_to_many:
                target = related_key(f, app_label)
                if target:
                    keys.add(target)
    return keys


# --- RunSQL ----------------------------------------------------------------------------------

_K = StatementKind
_DATA = frozenset({_K.UPDATE, _K.INSERT, _K.DELETE, _K.SET_LOCK_TIMEOUT, _K.SET_STATEMENT_TIMEOUT})
# Statements that change an object the database's state already models: applied to it.
_EDITS = frozenset(
    {
        _K.SET_NOT_NULL,
        _K.DROP_NOT_NULL,
        _K.DROP_COLUMN,
        _K.DROP_TABLE,
        _K.RENAME_COLUMN,
        _K.RENAME_TABLE,
    }
)


def _raw_fact(action: Any) -> Fact | None:
    """Return the object a statement creates outside any model, when it is comparable."""
    table, columns = action.table, tuple(action.columns)
    if action.kind in (_K.ADD_COLUMN, _K.ADD_COLUMN_VOLATILE_DEFAULT) and columns:
        return Fact(COLUMN, table, columns[:1])
    if action.kind in (_K.CREATE_INDEX, _K.CREATE_INDEX_CONCURRENTLY) and columns:
        return Fact(UNIQUE if action.unique else INDEX, table, columns, partial=action.has_where)
    if action.kind in (_K.CREATE_TABLE, _K.DROP_TABLE):
        return Fact(TABLE, table)
    if action.kind == _K.DROP_COLUMN and columns:
        return Fact(COLUMN, table, columns[:1])
    if action.kind in (_K.ADD_UNIQUE_CONSTRAINT, _K.ADD_UNIQUE_USING_INDEX) and columns:
        return Fact(UNIQUE, table, columns)
    if action.kind in (_K.ADD_FOREIGN_KEY, _K.ADD_FOREIGN_KEY_NOT_VALID) and columns:
        return Fact(FOREIGN_KEY, table, columns)
    if action.kind in (_K.ADD_CHECK, _K.ADD_CHECK_NOT_VALID) and columns:
        return Fact(CHECK, table, tuple(sorted(columns)))
    return None


def _edit(state: ProjectState, key: ModelKey, action: Any) -> bool:
    """Apply one statement to the database's view of a model; False when it cannot."""
    ms = state.models[key]
    if action.kind == _K.DROP_TABLE:
        del state.models[key]
        return True
    if action.kind == _K.RENAME_TABLE:
        if not action.new_name:
            return False
        ms.options["db_table"] = action.new_name
        return True
    column = action.columns[0] if action.columns else None
    name = next((n for n, f in ms.fields.items() if column_name(n, f) == column), None)
    if name is None:
        return False
    if action.kind == _K.DROP_COLUMN:
        del ms.fields[name]
        return True
    f = ms.fields[name].clone()  # field objects are shared with the model state: never mutate
    if action.kind in (_K.SET_NOT_NULL, _K.DROP_NOT_NULL):
        f.null = action.kind == _K.DROP_NOT_NULL
    elif action.kind == _K.RENAME_COLUMN and action.new_name:
        f.db_column = action.new_name
    else:
        return False
    ms.fields[name] = f
    return True


# --- the walk --------------------------------------------------------------------------------


class ExpectedWalk:
    """Carry the database's view and the model state through a plan, recording each change."""

    def __init__(self, vendor: str, conn: Any, real_apps: Iterable[str] = ()) -> None:
        self.vendor = vendor
        self.conn = conn
        self.db: ProjectState = WalkState(real_apps=set(real_apps))
        self.models: ProjectState = WalkState(real_apps=set(real_apps))

    def walk(self, plan: Sequence[migrations.Migration]) -> list[MigrationEffects]:
        return [self.apply(m) for m in plan]

    def apply(self, migration: migrations.Migration) -> MigrationEffects:
        effects = MigrationEffects(
            (migration.app_label, migration.name), bool(getattr(migration, "atomic", True))
        )
        for index, op in enumerate(migration.operations):
            effect = OperationEffect(index, type(op).__name__)
            self._operation(migration.app_label, op, effect, database=True, state=True)
            if not effect.changes and effect.unobservable is None:
                effect.unobservable = "changes nothing the schema shows"
            effects.operations.append(effect)
        return effects

    def _operation(
        self, app: str, op: Operation, effect: OperationEffect, *, database: bool, state: bool
    ) -> None:
        if isinstance(op, migrations.SeparateDatabaseAndState):
            for inner in op.database_operations:
                self._operation(app, inner, effect, database=database, state=False)
            for inner in op.state_operations:
                self._operation(app, inner, effect, database=False, state=state)
            return
        if isinstance(op, migrations.RunPython):
            effect.unobservable = effect.unobservable or "RunPython changes data, not the schema"
            return
        if isinstance(op, migrations.RunSQL):
            if database:
                self._sql(op, effect)
            for inner in op.state_operations:
                self._operation(app, inner, effect, database=False, state=state)
            return
        if state:
            # The model state is only a fallback source for the database's view.
            with suppress(Exception):
                op.state_forwards(app, self.models)
        if database:
            self._database(app, op, effect)

    def _database(self, app: str, op: Operation, effect: OperationEffect) -> None:
        touched = _touched(op, app, self.db)
        before = self._facts(touched)
        try:
            op.state_forwards(app, self.db)
        except Exception:  # noqa: BLE001
            # The database's view lacks a model the state adopted without a table change
            # (a state-only CreateModel); take the model state's version and go on.
            if not self._adopt(touched):
                effect.unobservable = "its model is unknown to the database's history"
                return
            before = self._facts(touched)
            if not self._retry(app, op):
                effect.unobservable = "its model is unknown to the database's history"
                return
        self._diff(before, self._facts(touched), effect)

    def _sql(self, op: migrations.RunSQL, effect: OperationEffect) -> None:
        actions, error = parse_sql_safe(op.sql, self.vendor)
        if error is not None:
            effect.unobservable = "raw SQL that could not be parsed"
            return
        opaque = False
        for action in actions:
            if action.kind in _DATA:
                continue
            owners = {
                key
                for key, ms in self.db.models.items()
                if action.table and _owns_table(ms) and _db_table(ms) == action.table
            }
            if action.kind in _EDITS and owners:
                before = self._facts(owners)
                edited = all(_edit(self.db, key, action) for key in owners)
                self._diff(before, self._facts(owners), effect)
                opaque = opaque or not edited
                continue
            fact = _raw_fact(action) if action.table else None
            if fact is None:
                opaque = True
            elif action.kind in _EDITS:
                effect.changes.append(Change(fact.key, fact, None))
            else:
                effect.changes.append(Change(fact.key, None, fact))
        if not effect.changes:
            effect.unobservable = (
                "raw SQL whose effect is not compared" if opaque else "raw SQL that changes data"
            )

    def _diff(
        self, before: dict[FactKey, Fact], after: dict[FactKey, Fact], effect: OperationEffect
    ) -> None:
        for key in before.keys() | after.keys():
            old, new = before.get(key), after.get(key)
            if old != new:
                effect.changes.append(Change(key, old, new))

    def _adopt(self, keys: set[ModelKey]) -> bool:
        adopted = False
        for key in keys:
            if key not in self.db.models and key in self.models.models:
                self.db.models[key] = self.models.models[key].clone()
                adopted = True
        return adopted

    def _retry(self, app: str, op: Operation) -> bool:
        try:
            op.state_forwards(app, self.db)
        except Exception:  # noqa: BLE001
            return False
        return True

    def _facts(self, keys: set[ModelKey]) -> dict[FactKey, Fact]:
        out: dict[FactKey, Fact] = {}
        for key in keys:
            out.update(model_facts(self.db, key, self.conn, self.vendor))
        return out


__all__ = [
    "CHECK",
    "COLUMN",
    "FOREIGN_KEY",
    "INDEX",
    "TABLE",
    "UNIQUE",
    "Change",
    "ExpectedWalk",
    "Fact",
    "MigrationEffects",
    "OperationEffect",
    "model_facts",
    "resolve_key",
]
