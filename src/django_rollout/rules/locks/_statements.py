"""What an operation runs, as statement kinds, and what those statements lock.

The lock rules judge the statements Django's schema editor runs for each operation, not the
operation's name: ``AddField`` of a foreign key is an ``ADD COLUMN ... REFERENCES`` plus an
index built at the end of the migration; ``AlterField`` of a foreign key drops the constraint
and adds it back, validated. :func:`steps_for` spells that out from the operation and the two
model states alone (no SQL is collected: that would render models for every operation); the
tests hold it equal to the SQL Django really emits. What each statement locks, scans and
rewrites comes from the vendor's fact table, never from a branch on the vendor here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Severity
from django_rollout.graph.context import OperationContext, Unit
from django_rollout.graph.model import (
    ModelKey,
    ModelView,
    column_name,
    default_db_table,
    has_db_default,
)
from django_rollout.graph.runsql import SqlAction, parse_sql_safe
from django_rollout.rules.locks._columns import (
    comment_altered,
    db_check,
    db_differs,
    db_type,
    field_target,
    fills_existing_rows,
    has_fk_constraint,
    has_like_index,
    volatile_db_default,
)
from django_rollout.vendors import LockFact, LockMode, StatementKind, UnsupportedStatementError

K = StatementKind


@dataclass(frozen=True)
class Step:
    """One statement (or one subcommand of one ALTER TABLE) an operation runs on one table.

    ``statement`` lists every kind the same statement carries: the locks of a statement are
    the strongest of its parts (``ADD COLUMN ... UNIQUE`` builds its index under ACCESS
    EXCLUSIVE). ``deferred`` statements run at the end of the migration, after every later
    operation (Django's ``deferred_sql``). ``hot`` is True when the table existed in S0.
    """

    kind: StatementKind
    table: str
    columns: tuple[str, ...] = ()
    referenced_table: str | None = None
    referenced_hot: bool = False
    statement: tuple[StatementKind, ...] = ()
    deferred: bool = False
    hot: bool = False
    rows: int | None = None
    old_type: str | None = None
    new_type: str | None = None
    has_where: bool = False
    detail: str = ""
    sql: str = ""
    constraint_name: str | None = None
    value: str | None = None

    @property
    def kinds(self) -> tuple[StatementKind, ...]:
        return self.statement or (self.kind,)


@dataclass(frozen=True)
class Lock:
    """A step with what the vendor's facts say it does."""

    step: Step
    fact: LockFact
    table_mode: LockMode | None
    referenced_mode: LockMode | None
    scans: bool
    rewrites: bool


def fact_version(unit: Unit) -> int:
    """Return the server version as the fact tables take it: ``major*10000 + minor*100 +
    patch`` (PostgreSQL reads the major from it, SQLite the whole of it)."""
    parts = (*unit.server_version, 0, 0, 0)[:3]
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def fact(unit: Unit, kind: StatementKind) -> LockFact | None:
    """Return the vendor's fact for ``kind``, or None where the server cannot run it."""
    try:
        return unit.facts.lock(kind, fact_version(unit))
    except UnsupportedStatementError:
        return None


def supports(unit: Unit, kind: StatementKind) -> bool:
    return fact(unit, kind) is not None


def resolve(unit: Unit, step: Step) -> Lock | None:
    """Return what ``step`` locks, or None when the vendor has no such statement."""
    own = fact(unit, step.kind)
    if own is None:
        return None
    facts = [f for f in (fact(unit, k) for k in step.kinds) if f is not None]
    table_modes = [f.table_mode for f in facts if f.table_mode is not None]
    rewrites = own.rewrites
    scans = own.scans
    if step.kind is K.ALTER_COLUMN_TYPE:
        if step.old_type is None or step.new_type is None:
            # A raw ALTER COLUMN TYPE on a column we cannot type: the fact's default holds.
            rewrites = own.rewrites
        else:
            rewrites = unit.facts.type_change_rewrites(
                step.old_type, step.new_type, fact_version(unit)
            )
        scans = rewrites
    return Lock(
        step=step,
        fact=own,
        table_mode=max(table_modes) if table_modes else None,
        referenced_mode=own.referenced_mode if step.referenced_table else None,
        scans=scans,
        rewrites=rewrites,
    )


def locks_for(ctx: OperationContext) -> list[Lock]:
    """Return the locks of the operation's statements (computed once per context: the eight
    lock rules and the migration-wide ones all ask)."""
    locks = ctx.memo.get("locks")
    if locks is None:
        locks = [lock for s in steps_for(ctx) if (lock := resolve(ctx.unit, s)) is not None]
        ctx.memo["locks"] = locks
    return list(locks)


def grade(unit: Unit, default: Severity, rows: int | None) -> Severity:
    """Grade by table size when S0 has row counts; keep the catalogue default without."""
    if rows is None:
        return default
    return unit.config.size_thresholds.grade(rows)


def size_text(rows: int | None) -> str:
    """Return the size a message quotes, e.g. `` (5,000,000 rows)``, or nothing."""
    return "" if rows is None else f" ({rows:,} rows)"


def mode_name(mode: LockMode | None) -> str:
    return mode.sql_name if mode is not None else "no lock"


# --- operations to steps --------------------------------------------------------------------


class _Builder:
    def __init__(self, ctx: OperationContext, model: ModelView) -> None:
        self.ctx = ctx
        self.unit = ctx.unit
        self.model = model
        self.table = model.db_table
        self.hot = ctx.table_in_s0
        self.rows = ctx.rows() if self.hot else None
        self.steps: list[Step] = []

    def related(self, field: models.Field[Any, Any]) -> tuple[str | None, bool]:
        """Return the table a relation points to and whether it existed in S0."""
        remote = getattr(field, "remote_field", None)
        if remote is not None and remote.model == "self":
            return self.table, self.hot
        key = field_target(field, self.ctx.app_label)
        if key is None:
            return None, False
        target = self.unit.model_now(key) or self.unit.lineage.s0_model(key)
        if target is None:
            return None, False
        return target.db_table, self.unit.in_s0(key)

    def add(self, kind: StatementKind, columns: Sequence[str | None] = (), **kw: Any) -> None:
        cols = tuple(c for c in columns if c)
        kw.setdefault("hot", self.hot)
        kw.setdefault("rows", self.rows)
        kw.setdefault("table", self.table)
        self.steps.append(Step(kind=kind, columns=cols, **kw))


def steps_for(ctx: OperationContext) -> list[Step]:
    """Return the statements Django runs for ``ctx.operation``, in order, deferred ones last.

    Computed once per context, when the first rule asks (while the operation is walked).
    """
    steps = ctx.memo.get("steps")
    if steps is None:
        steps = ctx.memo["steps"] = _steps_for(ctx)
    return list(steps)


def _steps_for(ctx: OperationContext) -> list[Step]:
    op = ctx.operation
    if not ctx.database:
        return []
    if isinstance(op, migrations.RunSQL):
        return runsql_steps(ctx)
    model = (
        ctx.before
        if isinstance(op, (migrations.DeleteModel, migrations.RemoveField))
        else (ctx.after or ctx.before)
    )
    if model is None or not model.has_table:
        return []
    b = _Builder(ctx, model)
    handler = _HANDLERS.get(type(op)) or next(
        (h for cls, h in _HANDLERS.items() if isinstance(op, cls)), None
    )
    if handler is not None:
        handler(b, op)
    return [s for s in b.steps if not s.deferred] + [s for s in b.steps if s.deferred]


def _add_field(b: _Builder, op: migrations.AddField) -> None:
    field, name = op.field, op.name
    if field.many_to_many:
        _through_fks(b, name, field, created=True)
        return
    column = column_name(name, field)
    if column is None:
        return
    type_ = db_type(b.unit, field, b.ctx.app_label)
    head = K.ADD_COLUMN_VOLATILE_DEFAULT if volatile_db_default(b.unit, field) else K.ADD_COLUMN
    kinds = [head]
    filled = fills_existing_rows(field)
    referenced, referenced_hot = (None, False)
    if field.primary_key:
        kinds.append(K.ADD_PRIMARY_KEY)
    elif field.unique:
        kinds.append(K.ADD_UNIQUE_CONSTRAINT)
    if db_check(b.unit, field, column):
        # The field's own CHECK (PositiveIntegerField) is checked against every row, NULL or
        # default alike: a scan under the ADD COLUMN's ACCESS EXCLUSIVE (observed).
        kinds.append(K.ADD_CHECK)
    if has_fk_constraint(field):
        referenced, referenced_hot = b.related(field)
        # A column that is NULL in every row has nothing to validate: PostgreSQL adds the
        # constraint without scanning (observed), as NOT VALID would.
        kinds.append(K.ADD_FOREIGN_KEY if filled else K.ADD_FOREIGN_KEY_NOT_VALID)
    statement = tuple(kinds)
    b.add(head, [column], statement=statement)
    for kind in kinds[1:]:
        ref = referenced if kind in (K.ADD_FOREIGN_KEY, K.ADD_FOREIGN_KEY_NOT_VALID) else None
        b.add(
            kind,
            [column],
            statement=statement,
            referenced_table=ref,
            referenced_hot=referenced_hot if ref else False,
            detail="inline",
        )
    if not field.null and not has_db_default(field) and filled:
        b.add(K.DROP_DEFAULT, [column])
    if field.db_index and not field.unique and not field.primary_key:
        b.add(K.CREATE_INDEX, [column], deferred=True, detail="db_index")
    if (field.db_index or field.unique) and has_like_index(b.unit, field, type_):
        b.add(K.CREATE_INDEX, [column], deferred=True, detail="like")


def _alter_field(b: _Builder, op: migrations.AlterField) -> None:
    old = b.ctx.before.fields.get(op.name) if b.ctx.before else None
    new, name = op.field, op.name
    if old is None or old.many_to_many or new.many_to_many:
        return
    changed = db_differs(old, new, name, b.ctx.same_target_table(old, new))
    comment = b.unit.vendor == "postgresql" and comment_altered(old, new)
    if not changed and not comment:
        return
    column = column_name(name, new)
    old_column = column_name(name, old)
    app = b.ctx.app_label
    fk_dropped = changed and has_fk_constraint(old)
    if fk_dropped:
        ref, ref_hot = b.related(old)
        b.add(
            K.DROP_CONSTRAINT,
            [old_column],
            referenced_table=ref,
            referenced_hot=ref_hot,
            detail="foreign key",
        )
    if old.unique and not new.unique and not old.primary_key:
        b.add(K.DROP_CONSTRAINT, [old_column], detail="unique")
    if old.db_index and not old.unique and not new.db_index and not new.primary_key:
        b.add(K.DROP_INDEX, [old_column])
    if old_column != column:
        b.add(K.RENAME_COLUMN, [old_column, column])
    old_type, new_type = db_type(b.unit, old, app), db_type(b.unit, new, app)
    if old_type is not None and new_type is not None and (old_type != new_type or comment):
        b.add(K.ALTER_COLUMN_TYPE, [column], old_type=old_type, new_type=new_type)
    if old.null and not new.null:
        # Django's own conditions (BaseDatabaseSchemaEditor._alter_field): a temporary
        # column default where the field's effective default is a value (a blank CharField
        # or FileField has ''), which fills no existing row; the UPDATE of the NULL rows
        # only where the field has a default or a db_default.
        temporary = not has_db_default(new) and fills_existing_rows(new)
        backfill = new.has_default() or has_db_default(new)
        if temporary:
            b.add(K.SET_DEFAULT, [column])
        if backfill:
            b.add(K.UPDATE, [column], has_where=True, detail="backfill")
        b.add(K.SET_NOT_NULL, [column], detail="backfill" if backfill else "")
        if temporary:
            b.add(K.DROP_DEFAULT, [column])
    elif not old.null and new.null:
        b.add(K.DROP_NOT_NULL, [column])
    if has_db_default(old) != has_db_default(new) or (
        has_db_default(new) and old.db_default != new.db_default
    ):
        b.add(K.SET_DEFAULT if has_db_default(new) else K.DROP_DEFAULT, [column])
    if new.unique and not old.unique and not new.primary_key:
        b.add(K.ADD_UNIQUE_CONSTRAINT, [column])
    if new.db_index and not new.unique and not (old.db_index and not old.unique):
        b.add(K.CREATE_INDEX, [column], detail="db_index")
    old_like = (old.db_index or old.unique) and has_like_index(b.unit, old, old_type)
    if (new.db_index or new.unique) and not old_like and has_like_index(b.unit, new, new_type):
        b.add(K.CREATE_INDEX, [column], detail="like")
    if column is not None:
        new_check = db_check(b.unit, new, column)
        if new_check and new_check != db_check(b.unit, old, column):
            b.add(K.ADD_CHECK, [column], detail="field check")
    if has_fk_constraint(new) and (fk_dropped or not has_fk_constraint(old)):
        ref, ref_hot = b.related(new)
        b.add(K.ADD_FOREIGN_KEY, [column], referenced_table=ref, referenced_hot=ref_hot)


def _remove_field(b: _Builder, op: migrations.RemoveField) -> None:
    field = b.model.fields.get(op.name)
    if field is None:
        return
    if field.many_to_many:
        _through_fks(b, op.name, field, created=False)
        return
    column = column_name(op.name, field)
    if has_fk_constraint(field):
        ref, ref_hot = b.related(field)
        b.add(
            K.DROP_CONSTRAINT,
            [column],
            referenced_table=ref,
            referenced_hot=ref_hot,
            detail="foreign key",
        )
    b.add(K.DROP_COLUMN, [column])


def _through_fks(b: _Builder, name: str, field: models.Field[Any, Any], created: bool) -> None:
    """Steps for an auto-created M2M table: created new, or dropped with the field."""
    if getattr(field.remote_field, "through", None) is not None:
        return  # an explicit through model has operations of its own
    through = f"{b.table}_{name}"
    target, target_hot = b.related(field)
    if created:
        b.add(K.CREATE_TABLE, (), table=through, hot=False, rows=None)
        b.add(K.ADD_UNIQUE_CONSTRAINT, (), table=through, hot=False, rows=None, deferred=True)
    for ref, ref_hot in ((b.table, b.hot), (target, target_hot)):
        if created:
            b.add(
                K.ADD_FOREIGN_KEY,
                (),
                table=through,
                hot=False,
                rows=None,
                deferred=True,
                referenced_table=ref,
                referenced_hot=ref_hot,
                detail="m2m",
            )
            b.add(K.CREATE_INDEX, (), table=through, hot=False, rows=None, deferred=True)
        else:
            b.add(
                K.DROP_TABLE,
                (),
                table=through,
                referenced_table=ref,
                referenced_hot=ref_hot,
                detail="m2m",
            )


def _create_model(b: _Builder, op: migrations.CreateModel) -> None:
    b.add(K.CREATE_TABLE, ())
    for name, field in op.fields:
        if field.many_to_many:
            _through_fks(b, name, field, created=True)
        elif has_fk_constraint(field):
            ref, ref_hot = b.related(field)
            column = column_name(name, field)
            b.add(
                K.ADD_FOREIGN_KEY,
                [column],
                deferred=True,
                referenced_table=ref,
                referenced_hot=ref_hot,
            )
            if field.db_index:
                b.add(K.CREATE_INDEX, [column], deferred=True)


def _delete_model(b: _Builder, op: migrations.DeleteModel) -> None:
    refs = []
    for name, field in b.model.fields.items():
        if field.many_to_many:
            _through_fks(b, name, field, created=False)
        elif has_fk_constraint(field):
            refs.append(b.related(field))
    for ref, ref_hot in refs or [(None, False)]:
        b.add(K.DROP_TABLE, (), referenced_table=ref, referenced_hot=ref_hot)


def _add_index(b: _Builder, op: migrations.AddIndex) -> None:
    from django.contrib.postgres.operations import AddIndexConcurrently

    kind = K.CREATE_INDEX_CONCURRENTLY if isinstance(op, AddIndexConcurrently) else K.CREATE_INDEX
    b.add(kind, list(op.index.fields), detail="index")


def _remove_index(b: _Builder, op: migrations.RemoveIndex) -> None:
    from django.contrib.postgres.operations import RemoveIndexConcurrently

    concurrent = isinstance(op, RemoveIndexConcurrently)
    b.add(K.DROP_INDEX_CONCURRENTLY if concurrent else K.DROP_INDEX)


def _add_constraint(b: _Builder, op: migrations.AddConstraint) -> None:
    constraint = op.constraint
    not_valid = type(op).__name__ == "AddConstraintNotValid"
    if isinstance(constraint, models.UniqueConstraint):
        as_index = bool(
            constraint.condition
            or constraint.contains_expressions
            or constraint.include
            or constraint.opclasses
        )
        if as_index:
            b.add(
                K.CREATE_INDEX,
                list(constraint.fields),
                detail="unique index",
                constraint_name=constraint.name,
            )
        else:
            b.add(K.ADD_UNIQUE_CONSTRAINT, list(constraint.fields), constraint_name=constraint.name)
    elif isinstance(constraint, models.CheckConstraint):
        kind = K.ADD_CHECK_NOT_VALID if not_valid else K.ADD_CHECK
        b.add(kind, (), constraint_name=constraint.name)
    else:
        b.add(K.OTHER, (), constraint_name=getattr(constraint, "name", None))


def _remove_constraint(b: _Builder, op: migrations.RemoveConstraint) -> None:
    b.add(K.DROP_CONSTRAINT, ())


def _validate_constraint(b: _Builder, op: Any) -> None:
    b.add(K.VALIDATE_CONSTRAINT, (), constraint_name=op.name)


def _together(b: _Builder, op: migrations.AlterUniqueTogether) -> None:
    option = op.option_name
    old = {tuple(s) for s in (b.ctx.before.options.get(option) or ())} if b.ctx.before else set()
    new = {tuple(s) for s in (getattr(op, option, None) or ())}
    for fields in sorted(old - new):
        b.add(K.DROP_CONSTRAINT if option == "unique_together" else K.DROP_INDEX, fields)
    for fields in sorted(new - old):
        columns = [b.model.column(f) or f for f in fields]
        if option == "unique_together":
            b.add(K.ADD_UNIQUE_CONSTRAINT, columns, detail="unique_together")
        else:
            b.add(K.CREATE_INDEX, columns, detail="index_together")


def _rename_field(b: _Builder, op: migrations.RenameField) -> None:
    before = b.ctx.before.column(op.old_name) if b.ctx.before else None
    after = b.model.column(op.new_name)
    if before and after and before != after:
        b.add(K.RENAME_COLUMN, [before, after])


def _hidden(field: models.Field[Any, Any]) -> bool:
    """Return True for a relation whose reverse side is hidden (``related_name`` ending in
    ``+``). ``Options.related_objects`` leaves such foreign keys out, so RenameModel never
    alters them; it keeps hidden many-to-many relations."""
    related_name = getattr(field.remote_field, "related_name", None) or ""
    return related_name.endswith("+") and not field.many_to_many


def _auto_through(field: models.Field[Any, Any], owner: ModelView, name: str) -> str | None:
    """Return the table of the auto-created through model of field ``name``, or None."""
    if not field.many_to_many or getattr(field.remote_field, "through", None) is not None:
        return None
    return getattr(field, "db_table", None) or f"{owner.db_table}_{name}"


def _points_to(field: models.Field[Any, Any], owner: ModelView, target: ModelKey) -> bool:
    remote = getattr(field, "remote_field", None)
    if remote is not None and remote.model == "self":
        return owner.key == target
    return field_target(field, owner.app_label) == target


def _rename_table(b: _Builder, op: Any) -> None:
    """Mirror ``RenameModel``/``AlterModelTable.database_forwards``: rename the table, rename
    the auto-created M2M tables named after it, and (RenameModel) alter every relation Django
    finds in the old model's ``related_objects`` plus the model's own M2M fields."""
    before = b.ctx.before
    if before is None:
        return
    moved = before.db_table != b.table
    if moved:
        b.add(K.RENAME_TABLE, (), table=before.db_table)
    renamed = isinstance(op, migrations.RenameModel)
    for name, field in b.model.fields.items():
        old_field = before.fields.get(name)
        through = _auto_through(field, b.model, name)
        old_through = _auto_through(old_field, before, name) if old_field is not None else None
        if through is None or old_through is None:
            continue
        if old_through != through:
            b.add(K.RENAME_TABLE, (), table=old_through)
        if renamed and not _points_to(field, b.model, b.model.key):
            # The through table's column to this model is named after it: renamed, and its
            # constraint rebuilt. (Self-referential M2M fields are altered below, as Django
            # does through related_objects.)
            _repoint(b, through, b.hot, (f"{op.old_name_lower}_id", f"{op.new_name_lower}_id"))
    if not renamed:
        return
    target = b.model.key
    for key in list(b.unit.state.models):
        other = b.model if key == target else b.unit.model_now(key)
        if other is None or not other.has_table:
            continue
        hot = b.hot if key == target else b.unit.in_s0(key)
        for name, field in other.fields.items():
            if not _points_to(field, other, target) or _hidden(field):
                continue
            through = _auto_through(field, other, name)
            if through is not None:
                old, new = op.old_name_lower, op.new_name_lower
                pairs = [(f"{old}_id", f"{new}_id")]
                if key == target:
                    pairs = [(f"to_{old}_id", f"to_{new}_id"), (f"from_{old}_id", f"from_{new}_id")]
                for pair in pairs:
                    _repoint(b, through, hot, pair)
            elif has_fk_constraint(field) and moved:
                # Django drops the constraint and adds it back, validated, on the referencing
                # table; a model whose db_table stays put keeps its constraints.
                column = column_name(name, field)
                table = other.db_table
                _repoint(b, table, hot, (column, column))


def _repoint(b: _Builder, table: str, hot: bool, columns: tuple[str | None, str | None]) -> None:
    """Drop a foreign key to the renamed model, rename its column if the name changes, and add
    the constraint back (validated)."""
    old, new = columns
    common = {
        "table": table,
        "hot": hot,
        "rows": b.unit.rows(table) if hot else None,
        "referenced_table": b.table,
        "referenced_hot": b.hot,
    }
    b.add(K.DROP_CONSTRAINT, [old], detail="foreign key", **common)
    if old != new:
        common.pop("referenced_table")
        common.pop("referenced_hot")
        b.add(K.RENAME_COLUMN, [old, new], **common)
        common |= {"referenced_table": b.table, "referenced_hot": b.hot}
    b.add(K.ADD_FOREIGN_KEY, [new], **common)


_HANDLERS: dict[type[Any], Any] = {
    migrations.AddField: _add_field,
    migrations.AlterField: _alter_field,
    migrations.RemoveField: _remove_field,
    migrations.CreateModel: _create_model,
    migrations.DeleteModel: _delete_model,
    migrations.AddIndex: _add_index,
    migrations.RemoveIndex: _remove_index,
    migrations.AddConstraint: _add_constraint,
    migrations.RemoveConstraint: _remove_constraint,
    migrations.AlterUniqueTogether: _together,
    migrations.RenameField: _rename_field,
    migrations.RenameModel: _rename_table,
    migrations.AlterModelTable: _rename_table,
}
if hasattr(migrations, "AlterIndexTogether"):
    _HANDLERS[migrations.AlterIndexTogether] = _together
try:
    from django.contrib.postgres.operations import ValidateConstraint

    _HANDLERS[ValidateConstraint] = _validate_constraint
except ImportError:  # pragma: no cover - django.contrib.postgres needs psycopg
    pass


# --- RunSQL ---------------------------------------------------------------------------------


def table_model(unit: Unit, table: str) -> ModelView | None:
    """Return the model (in the state the unit has reached) that owns ``table``."""
    for key, state in unit.state.models.items():
        # Compare names before building a view: a view copies the model's fields.
        name = state.options.get("db_table") or default_db_table(key[0], key[1])
        if name == table:
            model = unit.model_now(key)
            if model is not None and model.has_table:
                return model
    return None


def table_is_hot(unit: Unit, table: str, created: Iterable[str] = ()) -> bool:
    """Return True when ``table`` existed in S0. A table no model owns is taken to exist
    (raw SQL acts on it) unless raw SQL created it earlier in the migration."""
    if table in set(created):
        return False
    model = table_model(unit, table)
    return True if model is None else unit.in_s0(model.key)


def sql_actions(ctx: OperationContext) -> tuple[SqlAction, ...]:
    op = ctx.operation
    if not isinstance(op, migrations.RunSQL) or not ctx.database:
        return ()
    actions, error = parse_sql_safe(op.sql, ctx.unit.vendor)
    return () if error is not None else actions


def _created_before(ctx: OperationContext) -> set[str]:
    """Tables created by raw SQL earlier in the same migration."""
    created: set[str] = set()
    for earlier in list(ctx.migration.operations)[: ctx.index]:
        if isinstance(earlier, migrations.RunSQL):
            actions, error = parse_sql_safe(earlier.sql, ctx.unit.vendor)
            created |= {a.table for a in actions if a.kind is K.CREATE_TABLE and a.table}
    return created


def runsql_steps(ctx: OperationContext) -> list[Step]:
    unit = ctx.unit
    actions = sql_actions(ctx)
    created = _created_before(ctx)
    steps: list[Step] = []
    for action in actions:
        if action.kind is K.CREATE_TABLE and action.table:
            created.add(action.table)
            if action.referenced_table is None:
                continue
        table = action.table
        if table is None:
            continue
        kinds = tuple(a.kind for a in actions if a.sql == action.sql and a.table == table)
        old_type = None
        if action.kind is K.ALTER_COLUMN_TYPE and action.columns:
            model = table_model(unit, table)
            found = model.field_for_column(action.columns[0]) if model else None
            old_type = db_type(unit, found[1], model.app_label) if found and model else None
        hot = table_is_hot(unit, table, created)
        ref = action.referenced_table
        steps.append(
            Step(
                kind=action.kind,
                table=table,
                columns=action.columns,
                referenced_table=ref,
                referenced_hot=table_is_hot(unit, ref, created) if ref else False,
                statement=kinds,
                hot=hot,
                rows=unit.rows(table) if hot else None,
                old_type=old_type,
                new_type=action.value if action.kind is K.ALTER_COLUMN_TYPE else None,
                has_where=action.has_where,
                sql=action.sql,
                constraint_name=action.constraint_name,
                value=action.value,
                detail="unique index" if action.unique else "",
            )
        )
    return steps


def details(**values: Any) -> dict[str, Any]:
    """Return finding details without the values that are unknown."""
    return {key: value for key, value in values.items() if value is not None}
