"""D204: a check constraint validated over rows that may violate it."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import ModelKey
from django_rollout.rules.base import Rule
from django_rollout.rules.data._schema import (
    Fill,
    _pg_walk,
    added_in_this_migration,
    column_of,
    db_check,
    existing_fill,
    expression_fields,
    few_rows,
    graded,
    runsql_actions,
    size_note,
    table_ref,
    written_by_data_step,
)
from django_rollout.vendors.base import StatementKind as K


class _Unknown(Exception):
    """The condition is not a plain comparison of columns with constants."""


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "exact": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda a, b: a in b,
    "range": lambda a, b: b[0] <= a <= b[1],
}


def _holds(condition: Any, values: Mapping[str, Any]) -> bool | None:
    """Evaluate a Q over one row of constants in SQL's three-valued logic.

    Return True, False, or None (NULL: a CHECK accepts it). Raise _Unknown when the
    condition uses anything but ``field__lookup=constant``.
    """
    if not isinstance(condition, models.Q):
        raise _Unknown
    results: list[bool | None] = []
    for child in condition.children:
        if isinstance(child, models.Q):
            results.append(_holds(child, values))
            continue
        lookup, constant = child
        name, _, op = str(lookup).partition("__")
        op = op or "exact"
        if name not in values or "__" in op or hasattr(constant, "resolve_expression"):
            raise _Unknown
        value = values[name]
        if op == "isnull":
            results.append((value is None) == bool(constant))
        elif op not in _COMPARE:
            raise _Unknown
        elif value is None or constant is None:
            results.append(None)
        else:
            try:
                results.append(bool(_COMPARE[op](value, constant)))
            except TypeError as error:
                raise _Unknown from error
    if condition.connector == models.Q.OR:
        result: bool | None = True if True in results else (None if None in results else False)
    else:
        result = False if False in results else (None if None in results else True)
    if condition.negated and result is not None:
        result = not result
    return result


_SQL_OPS = {"exact": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def show(condition: Any) -> str:
    """Render a simple Q the way SQL reads; anything else as Django prints it."""
    if not isinstance(condition, models.Q):
        return str(condition)
    parts: list[str] = []
    for child in condition.children:
        if isinstance(child, models.Q):
            parts.append(f"({show(child)})")
            continue
        lookup, constant = child
        name, _, op = str(lookup).partition("__")
        op = op or "exact"
        if op in _SQL_OPS and not hasattr(constant, "resolve_expression"):
            parts.append(f"{name} {_SQL_OPS[op]} {constant!r}")
        elif op == "isnull":
            parts.append(f"{name} IS {'' if constant else 'NOT '}NULL")
        else:
            parts.append(f"{lookup}={constant!r}")
    text = f" {condition.connector} ".join(parts)
    return f"NOT ({text})" if condition.negated else text


def _constant(field: models.Field[Any, Any]) -> Any:
    """Return the one Python value an added column gives existing rows, or raise _Unknown."""
    fill = existing_fill(field)
    if fill.fill is Fill.NULL:
        return None
    if fill.fill is not Fill.CONSTANT:
        raise _Unknown
    db_default = getattr(field, "db_default", models.NOT_PROVIDED)
    if db_default is not models.NOT_PROVIDED:
        if isinstance(db_default, models.Value):
            return db_default.value
        if hasattr(db_default, "resolve_expression"):
            raise _Unknown
        return db_default
    if field.has_default():
        if callable(field.default):
            raise _Unknown
        return field.default
    if not field.null and field.blank and field.empty_strings_allowed:
        return ""
    raise _Unknown


class CheckOverViolatingRows(Rule):
    """A check constraint added over existing rows that may violate it.

    What it does
    ------------
    Flags a CHECK that PostgreSQL validates against the rows of a table in S0:
    ``AddConstraint(CheckConstraint)`` over a column of S0, an ``AlterField`` whose new
    field brings a check the old one lacked (``IntegerField`` to ``PositiveIntegerField``
    adds ``CHECK (col >= 0)``; ``choices`` add none), RunSQL ``ADD CONSTRAINT ... CHECK``
    without ``NOT VALID``. A check over columns added in the unit only is evaluated
    against the one value ``AddField`` gave existing rows (``Q(field__lookup=constant)``
    conditions): silent when that value passes, flagged when it fails or cannot be
    evaluated. Info instead of a warning when a data step walked before it (an earlier
    migration, deployed or not, or an earlier operation of this one) writes one of the
    check's columns into existing rows: the team prepared the values. Stays silent for
    ``NOT VALID`` checks, ``VALIDATE CONSTRAINT`` (the second step of the safe recipe) and
    tables created in the unit. With S0 row counts, an empty table makes it info. Not
    covered: a check brought by ``AddField`` itself (``PositiveIntegerField(default=-1)``).

    Why it breaks production
    ------------------------
    ``ALTER TABLE ... ADD CONSTRAINT ... CHECK`` scans every row under ACCESS EXCLUSIVE and
    stops at the first that fails: ``check constraint "..." of relation "..." is violated by
    some row``. Legacy rows written before the rule existed (a negative price, an empty code)
    make the migration fail on production only.

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
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("price", models.DecimalField(max_digits=10, decimal_places=2)),
        ]),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE shop_product ADD CONSTRAINT price_non_negative"
                    " CHECK (price >= 0) NOT VALID",
                    "ALTER TABLE shop_product DROP CONSTRAINT price_non_negative",
                ),
            ],
            state_operations=[
                migrations.AddConstraint(
                    "product",
                    models.CheckConstraint(condition=Q(price__gte=0), name="price_non_negative"),
                ),
            ],
        ),
    ]
    ```
    """

    id = "D204"
    sqlstates = ("23514",)
    name = "check-over-violating-rows"
    severity = Severity.WARNING
    message = (
        "CHECK {check} is validated over the existing rows of `{table}`: any row that violates"
        " it fails the migration with `check constraint ... is violated by some row`{size}"
    )
    prepared_message = (
        "CHECK {check} is validated over the existing rows of `{table}`, whose {columns} an"
        " earlier data step wrote: any row it left violating the check fails the migration"
        " with `check constraint ... is violated by some row`{size}"
    )
    help = (
        "Add the check NOT VALID, fix the rows of `{table}` that violate it, then VALIDATE"
        " CONSTRAINT separately"
    )
    recipe_steps = (
        "Find the rows that fail it: SELECT count(*) FROM {table} WHERE NOT ({check}); fix"
        ' them in batches (RunPython with apps.get_model("{app_label}", "{model}")).',
        "Add the check without checking old rows: SeparateDatabaseAndState("
        'database_operations=[RunSQL("ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK'
        ' ({check}) NOT VALID")], state_operations=[<the constraint or field change>]).',
        'In a later migration, check again, then RunSQL("ALTER TABLE {table} VALIDATE'
        ' CONSTRAINT {constraint}") (SHARE UPDATE EXCLUSIVE: writes continue).',
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if not ctx.table_in_s0 or ctx.before is None:
            return
        if isinstance(op, migrations.AddConstraint) and isinstance(
            op.constraint, models.CheckConstraint
        ):
            constraint = op.constraint
            condition = getattr(constraint, "condition", None) or getattr(constraint, "check", None)
            fields = expression_fields(condition)
            if (
                fields
                and all(ctx.s0_field(f) is None for f in fields)
                and self._passes_on_added_values(ctx, sorted(fields), condition)
            ):
                return
            yield self._finding(
                ctx,
                sorted(fields),
                check=f"({show(condition)})",
                constraint=constraint.name,
                field=min(fields) if fields else "",
            )
        elif isinstance(op, migrations.AlterField) and ctx.s0_field(op.name) is not None:
            old = ctx.before.fields.get(op.name)
            new_check = db_check(op.field, op.name, ctx.unit)
            if old is None or new_check is None:
                return
            if db_check(old, op.name, ctx.unit) == new_check:
                return
            column = column_of(op.name, op.field)
            yield self._finding(
                ctx,
                [op.name],
                check=f"({new_check})",
                constraint=f"{ctx.before.db_table}_{column}_check",
                field=op.name,
                column=column,
            )

    def _passes_on_added_values(
        self, ctx: OperationContext, fields: list[str], condition: Any
    ) -> bool:
        assert ctx.before is not None
        added = added_in_this_migration(ctx, fields)
        source = added if added is not None else ctx.before.fields
        try:
            values = {f: _constant(source[f]) for f in fields if f in source}
            return _holds(condition, values) is not False
        except _Unknown:
            return False

    def _finding(
        self,
        ctx: OperationContext,
        fields: Sequence[str],
        key: ModelKey | None = None,
        **names: Any,
    ) -> Finding:
        table = str(names.get("table") or (ctx.before.db_table if ctx.before else ""))
        small = few_rows(ctx.unit, table, 0)
        prepared = [
            f for f in fields if written_by_data_step(ctx, key or ctx.key, table, [f], opaque=False)
        ]
        return self.finding(
            ctx,
            severity=Severity.INFO if prepared else graded(self.severity, small),
            message=self.prepared_message if prepared else None,
            columns=", ".join(f"`{f}`" for f in prepared),
            size=size_note(small),
            **names,
        )

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind is not K.ADD_CHECK:
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None or ref.s0 is None:
                continue
            if action.columns and all(ref.s0_field(ctx.unit, c) is None for c in action.columns):
                continue  # an inline CHECK of a column added in the unit
            yield self._finding(
                ctx,
                action.columns or _expression_columns(action.value),
                ref.key,
                check=f"({action.value})" if action.value else "",
                constraint=action.constraint_name or "<constraint>",
                table=ref.now.db_table,
                model=ref.now.name,
            )


def _expression_columns(expression: str | None) -> tuple[str, ...]:
    """Return the columns a SQL boolean expression reads (``price >= 0`` -> ``price``)."""
    if not expression:
        return ()
    import pglast
    from pglast import ast as pg

    try:
        tree = pglast.parse_sql(f"SELECT {expression}")
    except pglast.parser.ParseError:
        return ()
    columns: list[str] = []
    for node in _pg_walk(tree):
        if isinstance(node, pg.ColumnRef):
            names = [str(f.sval) for f in node.fields or () if isinstance(f, pg.String)]
            if names:
                columns.append(names[-1].lower())
    return tuple(dict.fromkeys(columns))
