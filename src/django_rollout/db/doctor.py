"""``django_migrations`` against the real schema and the code: the diagnosis and the repair.

The schema is read once (``introspect``); the code's expectations come from
``graph/expected.py``, fact by fact, per operation. Each migration is judged by the changes
it makes whose object no later applied migration touches again:

* *done*: the schema shows the object as the migration leaves it;
* *not done*: it shows the object as it was before the migration;
* *differs*: neither (changed by hand), or the comparison cannot decide.

Unrecorded migrations are judged first, newest first, so that an earlier one is compared
with what the applied later ones leave; recorded ones are then judged against the recorded
set plus those the evidence shows applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.migrations.migration import Migration

from django_rollout.db.introspect import Schema, Table
from django_rollout.graph.expected import (
    CHECK,
    COLUMN,
    FOREIGN_KEY,
    INDEX,
    TABLE,
    UNIQUE,
    Change,
    Fact,
    FactKey,
    MigrationEffects,
)

MigrationKey = tuple[str, str]

APPLIED = "applied"
NOT_APPLIED = "not applied"
PARTIAL = "partial"
DIFFERS = "differs"
UNOBSERVABLE = "unobservable"

# Base types whose spelling Django and the catalogue share exactly; a column of any other
# type (a custom field, an extension's) is compared by presence and nullability only.
_COMPARABLE_TYPES = frozenset(
    {
        "varchar",
        "char",
        "text",
        "integer",
        "bigint",
        "smallint",
        "numeric",
        "boolean",
        "date",
        "time",
        "timestamp",
        "timestamp with time zone",
        "double precision",
        "real",
        "uuid",
        "jsonb",
        "interval",
        "inet",
        "bytea",
    }
)


@dataclass(frozen=True)
class Evidence:
    """One object that shows a migration's state in the schema."""

    operation_index: int
    operation: str
    fact: str
    expected: str
    observed: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation_index": self.operation_index,
            "operation": self.operation,
            "object": self.fact,
            "expected": self.expected,
            "observed": self.observed,
        }

    def line(self) -> str:
        return f"{self.fact} {self.observed}"


@dataclass
class Judgement:
    """What the schema shows of one migration the code has."""

    key: MigrationKey
    recorded: bool
    atomic: bool
    status: str = UNOBSERVABLE
    done: list[Evidence] = field(default_factory=list)
    not_done: list[Evidence] = field(default_factory=list)
    differs: list[Evidence] = field(default_factory=list)
    # (operation index, operation, why) for operations the schema cannot show.
    unobservable: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def first_not_done(self) -> int | None:
        indexes = [e.operation_index for e in self.not_done]
        return min(indexes) if indexes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "app_label": self.key[0],
            "migration": self.key[1],
            "recorded": self.recorded,
            "status": self.status,
            "done": [e.to_dict() for e in self.done],
            "not_done": [e.to_dict() for e in self.not_done],
            "differs": [e.to_dict() for e in self.differs],
            "unobservable": [
                {"operation_index": i, "operation": name, "why": why}
                for i, name, why in self.unobservable
            ],
        }


# --- observing one fact --------------------------------------------------------------------


def _base(type_text: str | None) -> str | None:
    if not type_text:
        return None
    base = type_text.split("(")[0].strip()
    return base if base in _COMPARABLE_TYPES else None


def _plain_index(table: Table, columns: tuple[str, ...], partial: bool) -> bool:
    # Django's ``*_like`` pattern-ops index sits beside the unique or plain index of a
    # varchar/text column; it must not pass for the index a migration removed, nor for one
    # it adds, so only the first plain index per column list counts once it is matched.
    return any(
        index.columns == columns
        and index.partial == partial
        and not index.unique
        and not index.primary
        and index.valid
        and not getattr(index, "opclasses", ())
        for index in table.indexes
    )


def observe(schema: Schema, fact: Fact) -> bool | None:
    """Return True when the schema holds ``fact`` as described, None when it cannot tell."""
    table = schema.tables.get(fact.table)
    if fact.kind == TABLE:
        return table is not None
    if table is None:
        # The table itself decides (its own fact); without it a column or an index is no
        # evidence either way: the app may simply not be migrated yet.
        return None
    if fact.kind == COLUMN:
        column = table.columns.get(fact.columns[0])
        if column is None:
            return False
        if fact.null is not None and column.null != fact.null:
            return False
        expected, actual = _base(fact.type), _base(column.type)
        return not (expected and actual and fact.type != column.type)
    if fact.kind == INDEX:
        return _plain_index(table, fact.columns, fact.partial)
    if fact.kind == UNIQUE:
        if fact.partial:
            return any(
                i.unique and i.partial and i.valid and i.columns == fact.columns
                for i in table.indexes
            )
        return table.has_unique(fact.columns)
    if fact.kind == FOREIGN_KEY:
        return any(
            c.columns == fact.columns
            and (fact.references is None or (c.references or ("",))[0] == fact.references[0])
            for c in table.foreign_keys()
        )
    if fact.kind == CHECK:
        if schema.vendor != "postgresql":
            return None
        return any(c.kind == "check" and c.columns == fact.columns for c in table.constraints)
    return None


def _present(schema: Schema, key: FactKey) -> bool | None:
    kind, table, columns, partial = key
    return observe(schema, Fact(kind, table, columns, partial))


def _matches(schema: Schema, value: Fact | None, key: FactKey) -> bool | None:
    if value is None:
        present = _present(schema, key)
        return None if present is None else not present
    return observe(schema, value)


def _describe_actual(schema: Schema, key: FactKey) -> str:
    kind, table_name, columns, _ = key
    table = schema.tables.get(table_name)
    if kind == COLUMN and table is not None:
        column = table.columns.get(columns[0])
        if column is not None:
            return f"is {column.type} {'NULL' if column.null else 'NOT NULL'}"
    present = _present(schema, key)
    return "is missing" if present is False else "is present"


# --- judging migrations ----------------------------------------------------------------------


class History:
    """Each fact's changes along the plan, to find what the applied later ones leave."""

    def __init__(self, effects: Sequence[MigrationEffects]) -> None:
        self.position = {e.key: n for n, e in enumerate(effects)}
        self.changes: dict[FactKey, list[tuple[int, int, Change]]] = {}
        for n, effect in enumerate(effects):
            for index, change in effect.changes():
                self.changes.setdefault(change.key, []).append((n, index, change))

    def last_change(
        self,
        key: FactKey,
        after: tuple[int, int],
        applied: Mapping[MigrationKey, bool],
        order: Sequence[MigrationKey],
    ) -> Change | None:
        """Return the last change to ``key`` after ``after`` by an applied migration."""
        found = None
        for n, index, change in self.changes.get(key, ()):
            if (n, index) > after and (n == after[0] or applied.get(order[n], False)):
                found = change
        return found


def judge(
    effects: MigrationEffects,
    schema: Schema,
    history: History,
    applied: Mapping[MigrationKey, bool],
    order: Sequence[MigrationKey],
    recorded: bool,
) -> Judgement:
    """Compare one migration's changes with the schema, given which later ones are applied."""
    j = Judgement(effects.key, recorded, effects.atomic)
    at = history.position[effects.key]
    for op in effects.operations:
        if op.unobservable and not op.changes:
            j.unobservable.append((op.index, op.name, op.unobservable))
        for change in op.changes:
            later = history.last_change(change.key, (at, op.index), applied, order)
            after, before = change.after, change.before
            if later is not None:
                if later.after is None or after is None or before is not None:
                    continue  # removed or re-altered later: this step leaves no trace
                # Created here, altered later: only its presence is this migration's.
                after = Fact(after.kind, after.table, after.columns, after.partial)
            shows_after = _matches(schema, after, change.key)
            shows_before = _matches(schema, before, change.key)
            desc = (after or before or _blank(change.key)).describe()
            if shows_after and not shows_before and shows_before is not None:
                shown = "is present" if after is not None else "is gone"
                j.done.append(Evidence(op.index, op.name, desc, _expect(after), shown))
            elif shows_after is False and shows_before is not None:
                # Not as the migration left it: as before it (not done), or neither (differs).
                seen = _describe_actual(schema, change.key)
                found = Evidence(op.index, op.name, desc, _expect(after), seen)
                (j.not_done if shows_before else j.differs).append(found)
    if j.done and not j.not_done and not j.differs:
        j.status = APPLIED
    elif j.not_done and not j.done and not j.differs:
        j.status = NOT_APPLIED
    elif j.done:
        j.status = PARTIAL
    elif j.differs:
        j.status = DIFFERS
    return j


def _blank(key: FactKey) -> Fact:
    kind, table, columns, partial = key
    return Fact(kind, table, columns, partial)


def _expect(value: Fact | None) -> str:
    return "absent" if value is None else "present"


def judge_all(
    effects: Sequence[MigrationEffects], schema: Schema, recorded: Iterable[MigrationKey]
) -> dict[MigrationKey, Judgement]:
    """Judge every migration of the plan: unrecorded ones newest first, then recorded ones."""
    history = History(effects)
    order = [e.key for e in effects]
    recorded_set = set(recorded)
    applied: dict[MigrationKey, bool] = {k: k in recorded_set for k in order}
    out: dict[MigrationKey, Judgement] = {}
    for effect in reversed(effects):
        if effect.key in recorded_set:
            continue
        j = judge(effect, schema, history, applied, order, recorded=False)
        out[effect.key] = j
        if j.status in (APPLIED, PARTIAL):
            applied[effect.key] = True
    for effect in effects:
        if effect.key in recorded_set:
            out[effect.key] = judge(effect, schema, history, applied, order, recorded=True)
    return out


def plan_keys(plan: Sequence[Migration]) -> list[MigrationKey]:
    return [(m.app_label, m.name) for m in plan]
