"""C108: a unique or check constraint that the old release's writes may violate."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.db import migrations, models
from django.db.models.expressions import Combinable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import ModelView, column_name, db_default_fills, has_db_default
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import (
    backticked,
    s0_column,
    sql_actions,
)
from django_rollout.rules.compat.c107_not_null_on_column_old_release_nulls import (
    not_null_check_column,
)
from django_rollout.vendors.base import StatementKind

K = StatementKind
UNIQUE_ERROR = "duplicate key value violates unique constraint"
CHECK_ERROR = "new row violates check constraint"


def expression_refs(node: Any) -> Iterator[str]:
    """Yield the field names a Q, F or expression refers to (first part of a lookup)."""
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from expression_refs(item)
    elif isinstance(node, models.Q):
        for child in node.children:
            if isinstance(child, tuple):
                yield str(child[0]).split("__")[0]
                yield from expression_refs(child[1])
            else:
                yield from expression_refs(child)
    elif isinstance(node, models.F):
        yield node.name.split("__")[0]
    elif isinstance(node, (Combinable, models.Expression)) and hasattr(
        node, "get_source_expressions"
    ):
        for source in node.get_source_expressions():
            yield from expression_refs(source)


def check_condition(constraint: models.CheckConstraint) -> Any:
    # ``check`` was renamed ``condition`` in Django 5.1.
    return getattr(constraint, "condition", None) or getattr(constraint, "check", None)


def field_name(model: ModelView, ref: str) -> str | None:
    """Return the field ``ref`` names, by field name or by attribute/column (``x_id``)."""
    if ref in model.fields:
        return ref
    for name, column, _field in model.columns():
        if column == ref:
            return name
    return None


def s0_unique_sets(s0: ModelView) -> list[frozenset[str]]:
    """Return the sets of S0 field names the old release's table is already unique over."""
    sets = [frozenset({n}) for n, f in s0.fields.items() if f.unique and not f.many_to_many]
    sets.extend(frozenset(t) for t in s0.options.get("unique_together") or ())
    for constraint in s0.options.get("constraints") or ():
        if (
            isinstance(constraint, models.UniqueConstraint)
            and constraint.fields
            and constraint.condition is None
            and not constraint.expressions
            and getattr(constraint, "nulls_distinct", None) is not False
        ):
            sets.append(frozenset(constraint.fields))
    return sets


def constant_db_default(field: models.Field[Any, Any]) -> bool:
    """Return True when every row inserted without the column gets the same value."""
    if not has_db_default(field):
        return False
    value = field.db_default
    if isinstance(value, models.Value):
        return True
    return not isinstance(value, (Combinable, models.Expression))


def leaves_null(field: models.Field[Any, Any], s0_field: models.Field[Any, Any] | None) -> bool:
    """Return True when the old release's model inserts NULL into this column.

    A column new in the unit gets its ``db_default`` or NULL; an S0 column gets what the old
    model sends: NULL for a nullable field without any default.
    """
    if s0_field is None:
        return bool(field.null) and not db_default_fills(field)
    return (
        bool(s0_field.null)
        and not db_default_fills(s0_field)
        and s0_field.default in (models.NOT_PROVIDED, None)
    )


def sql_expression_columns(expression: str) -> set[str] | None:
    """Return the columns a SQL check expression names, or None when it does not parse."""
    import pglast  # imported on first use: slow to import, most runs parse no SQL
    from pglast import ast

    try:
        statements = pglast.parse_sql(f"SELECT {expression}")
    except pglast.parser.ParseError:
        return None
    columns: set[str] = set()
    stack: list[Any] = [statements]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ColumnRef):
            names = [f.sval for f in node.fields or () if isinstance(f, ast.String) and f.sval]
            if names:
                columns.add(names[-1].lower())
        if isinstance(node, ast.Node):
            stack.extend(getattr(node, attr) for attr in node)
        elif isinstance(node, (tuple, list)):
            stack.extend(node)
    return columns


class ConstraintOldWritesMayViolate(Rule):
    """Unique or check constraint on columns the old release writes without knowing it.

    What it does
    ------------
    Flags ``AddConstraint`` (``UniqueConstraint``, ``CheckConstraint``), ``AlterField`` that
    makes a field unique (``unique=True``, a ``ForeignKey`` turned into a ``OneToOneField``),
    ``AlterUniqueTogether`` adding a set, and ``RunSQL`` adding a unique or check constraint
    or a unique index, on a table in S0 when the constraint covers a column the old release
    writes. A constraint only on columns added in the deploy unit is silent, except a unique
    one whose new columns all have one constant ``db_default``: every row the old release
    inserts gets the same key. A unique key with a column that the old release's model
    leaves NULL (nullable, no default: the last step of "add nullable, backfill, make
    unique") is silent too, since NULLs never collide (unless ``nulls_distinct=False``); the
    historical model cannot show code that sets such a field explicitly. Silent as well when
    the old release's table was already unique over a subset of the columns (a
    ``unique_together`` turned into a ``UniqueConstraint``) or had the same check, for tables
    created in the unit and for state-only operations. The old release's validation
    (``choices``, ``validators``, forms) is not compared with a check's condition: a check it
    already enforces in Python still fires.

    Why it breaks production
    ------------------------
    The old release's model validates nothing about the new constraint: its writes that
    break it fail with ``IntegrityError: duplicate key value violates unique constraint``
    or ``new row violates check constraint`` as unhandled errors, until the last old server
    stops. Whether it writes such values depends on the code and data: hence a warning.
    Existing rows that violate it are D201 and D204.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("price", models.DecimalField(max_digits=10, decimal_places=2)),
        ]),
    ]
    operations = [
        migrations.AddConstraint(
            "product",
            models.CheckConstraint(condition=Q(price__gte=0), name="price_non_negative"),
        ),
    ]
    ```

    Use instead
    -----------
    ```python
    import django.core.validators

    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("price", models.DecimalField(max_digits=10, decimal_places=2)),
        ]),
    ]
    # This release validates in code only (a validator, form and serializer checks); the
    # constraint comes in the next release, when no old server writes.
    operations = [
        migrations.AlterField(
            "product",
            "price",
            models.DecimalField(
                max_digits=10,
                decimal_places=2,
                validators=[django.core.validators.MinValueValidator(0)],
            ),
        ),
    ]
    ```
    """

    id = "C108"
    sqlstates = ("23503", "23505", "23514")
    name = "constraint-old-writes-may-violate"
    severity = Severity.WARNING
    message = (
        "`{table}` gains {what} on {columns}, which the old release writes without knowing it:"
        " its writes that break it fail with `{error}`"
    )
    help = (
        "Validate in code in this release; add the constraint in the next one, when no old"
        " server writes `{table}`"
    )
    recipe_steps = (
        "This release: enforce the rule in the new code only (model validation, forms,"
        " serializers, `get_or_create` instead of `create` for uniqueness), without the"
        " constraint.",
        "Clean up existing rows that break it (see D201, D204).",
        "Next release (when no server runs the code from before {migration}): add the"
        " constraint (for a unique one, `CREATE UNIQUE INDEX CONCURRENTLY` then"
        " `ADD CONSTRAINT ... UNIQUE USING INDEX`; for a check, `NOT VALID` then"
        " `VALIDATE CONSTRAINT`, see L301/L302).",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._run_sql(ctx)
            return
        if ctx.after is None or not ctx.table_in_s0:
            return
        if isinstance(op, migrations.AddConstraint):
            yield from self._add_constraint(ctx, op.constraint)
        elif isinstance(op, migrations.AlterField):
            old = ctx.before.fields.get(op.name) if ctx.before else None
            if old is not None and not old.unique and op.field.unique:
                yield from self._unique(ctx, [op.name], f"a unique `{op.name}`")
        elif isinstance(op, migrations.AlterUniqueTogether):
            before = {
                tuple(t)
                for t in (ctx.before.options if ctx.before else {}).get("unique_together") or ()
            }
            for names in sorted(op.unique_together or ()):
                if tuple(names) not in before:
                    yield from self._unique(ctx, list(names), "a `unique_together`")

    def _add_constraint(self, ctx: OperationContext, constraint: Any) -> Iterable[Finding]:
        label = f"`{constraint.name}`"
        if isinstance(constraint, models.UniqueConstraint):
            what = f"the unique constraint {label}"
            distinct = getattr(constraint, "nulls_distinct", None) is not False
            if constraint.fields:
                names = list(constraint.fields)
                yield from self._unique(ctx, names, what, nulls_distinct=distinct)
            else:
                # lower(name) is not implied by a unique name: never "already unique".
                names = list(expression_refs(constraint.expressions))
                yield from self._unique(ctx, names, what, exact=False, nulls_distinct=distinct)
        elif isinstance(constraint, models.CheckConstraint):
            condition = check_condition(constraint)
            s0 = ctx.s0_model
            if s0 is not None and any(
                isinstance(c, models.CheckConstraint) and check_condition(c) == condition
                for c in s0.options.get("constraints") or ()
            ):
                return
            yield from self._check(ctx, set(expression_refs(condition)), label)

    def _s0_names(self, ctx: OperationContext, names: Iterable[str]) -> dict[str, str]:
        """Map the constraint's current field names to the S0 field names they descend from."""
        assert ctx.after is not None
        s0 = ctx.s0_model
        mapped: dict[str, str] = {}
        for ref in names:
            name = field_name(ctx.after, ref)
            s0_field = None if name is None else ctx.s0_field(name)
            if name is None or s0 is None or s0_field is None:
                continue
            mapped[name] = next((n for n, f in s0.fields.items() if f is s0_field), name)
        return mapped

    def _unique(
        self,
        ctx: OperationContext,
        refs: list[str],
        what: str,
        exact: bool = True,
        nulls_distinct: bool = True,
    ) -> Iterable[Finding]:
        assert ctx.after is not None
        names = [n for n in (field_name(ctx.after, r) for r in refs) if n is not None]
        if not names:
            return
        s0 = ctx.s0_model
        mapped = self._s0_names(ctx, names)
        if nulls_distinct and any(
            leaves_null(ctx.after.fields[n], ctx.s0_field(n) if n in mapped else None)
            for n in names
        ):
            # The old release's model writes NULL into part of the key: NULLs never collide.
            # (Code that sets the field explicitly is not in the historical model.)
            return
        if mapped:
            already = frozenset(mapped.values())
            if exact and s0 is not None and any(s <= already for s in s0_unique_sets(s0)):
                return
        elif not all(constant_db_default(ctx.after.fields[n]) for n in names):
            # Only new columns: the old release's inserts fill them with per-row defaults or
            # fail outright (C101): no duplicate keys from it.
            return
        yield self._report(ctx, what, names, UNIQUE_ERROR)

    def _check(self, ctx: OperationContext, refs: set[str], label: str) -> Iterable[Finding]:
        assert ctx.after is not None
        names = sorted(n for n in (field_name(ctx.after, r) for r in refs) if n is not None)
        if not self._s0_names(ctx, names):
            return
        yield self._report(ctx, f"the check constraint {label}", names, CHECK_ERROR)

    def _report(self, ctx: OperationContext, what: str, names: list[str], error: str) -> Finding:
        assert ctx.after is not None
        columns = [column_name(n, ctx.after.fields[n]) or n for n in names]
        return self.finding(ctx, what=what, columns=backticked(columns), error=error)

    def _run_sql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in sql_actions(ctx):
            unique = action.kind is K.ADD_UNIQUE_CONSTRAINT or (
                action.kind in (K.CREATE_INDEX, K.CREATE_INDEX_CONCURRENTLY) and action.unique
            )
            if unique:
                error, columns = UNIQUE_ERROR, set(action.columns)
                if action.kind is K.ADD_UNIQUE_CONSTRAINT:
                    what = f"the unique constraint `{action.constraint_name or ''}`"
                else:
                    what = f"the unique index `{action.index_name or ''}`"
            elif action.kind in (K.ADD_CHECK, K.ADD_CHECK_NOT_VALID):
                if not_null_check_column(action.value):
                    continue  # a NOT NULL in disguise: C107
                error = CHECK_ERROR
                what = f"the check constraint `{action.constraint_name or ''}`"
                columns = sql_expression_columns(action.value or "") or set()
            else:
                continue
            model = ctx.unit.lineage.s0_model_for_table(action.table)
            if model is None:
                continue
            known: dict[str, models.Field[Any, Any]] = {}
            for column in sorted(columns):
                found = s0_column(ctx.unit, action.table, column)
                if found is not None:
                    known[column] = model.fields[found[1]]
            # Expression-only keys and unparsable checks name no column: judge by the table.
            if columns and not known:
                continue
            if unique and any(leaves_null(f, f) for f in known.values()):
                continue  # the old model writes NULL into part of the key: no collision
            yield self.finding(
                ctx,
                model=model.name,
                table=model.db_table,
                what=what.replace(" ``", ""),
                columns=backticked(known) if known else "its columns",
                error=error,
            )
