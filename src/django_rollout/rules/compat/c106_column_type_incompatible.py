"""C106: a column type changed in a way the old release may not read or write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations, models
from django.db.backends.base.base import BaseDatabaseWrapper

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext, Unit
from django_rollout.graph.model import ModelView, column_name
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import related_target, s0_column, sql_actions
from django_rollout.vendors.base import StatementKind, parse_db_type

# Types whose values the same Python type carries; a change inside one family only matters
# if it narrows. Across families the old release reads other Python types (str for a UUID,
# datetime for a date) and its filters compare mismatched types.
_FAMILIES = {
    "smallint": "number",
    "integer": "number",
    "bigint": "number",
    "numeric": "number",
    "real": "number",
    "double precision": "number",
    "varchar": "text",
    "char": "text",
    "text": "text",
    "citext": "text",
    "timestamp": "datetime",
    "timestamptz": "datetime",
    "time": "time",
    "timetz": "time",
    "json": "json",
    "jsonb": "json",
    "inet": "inet",
    "cidr": "inet",
}


def family(db_type: str) -> str:
    base = parse_db_type(db_type).base
    return _FAMILIES.get(base, base)


def _pk(model: ModelView, to_field: str | None) -> models.Field[Any, Any] | None:
    if to_field:
        return model.fields.get(to_field)
    return next((f for f in model.fields.values() if getattr(f, "primary_key", False)), None)


def db_type(
    field: models.Field[Any, Any],
    connection: BaseDatabaseWrapper,
    target: ModelView | None = None,
) -> str | None:
    """Return the column type of ``field``; a foreign key takes its target's key type.

    Return None when it cannot be known offline (unresolved target, custom field that needs
    its model): the rule then stays silent rather than guess.
    """
    try:
        if field.is_relation and (field.many_to_one or field.one_to_one):
            if target is None:
                return None
            key = _pk(target, getattr(field, "to_fields", [None])[0])
            found = None if key is None else key.rel_db_type(connection)
        else:
            found = field.db_type(connection)
    except Exception:  # noqa: BLE001 - Django raises many types here for unbound fields
        return None
    return None if found is None else str(found)


def incompatibility(old: str, new: str, unit: Unit) -> str | None:
    """Return why the old release may not read or write ``new`` values, or None."""
    if parse_db_type(old) == parse_db_type(new):
        return None
    if family(old) != family(new):
        return "its queries bind and read values of another type"
    if unit.facts.type_change_narrows(old, new):
        return "its values may not fit"
    return None


class ColumnTypeIncompatible(Rule):
    """Column type of a table in S0 changed so that the old release may fail to write it.

    What it does
    ------------
    Compares the column type the old release's field has (S0) with the type ``AlterField``
    (or ``RunSQL`` ``ALTER COLUMN ... TYPE``) gives it, using the database's own type names,
    and flags a narrowing (``varchar(100)`` to ``varchar(50)``, ``bigint`` to ``integer``,
    ``timestamptz`` to ``date``, fewer decimal places) or a change of kind (text to number,
    UUID to text). Silent for widening (longer ``varchar``, ``varchar`` to ``text``,
    ``integer`` to ``bigint``, more numeric precision), for field changes that keep the type
    (``choices``, ``validators``, ``help_text``, ``blank``), for columns or tables new
    in the deploy unit, and when the same operation also renames the column (a foreign key
    ``page`` turned into a ``CharField`` ``page``: ``page_id`` becomes ``page``): the old
    release then fails on the missing column, which C103 reports.

    Why it breaks production
    ------------------------
    The old release keeps binding values its field accepted: after a narrowing PostgreSQL
    rejects them (``DataError: value too long for type character varying(50)``,
    ``integer out of range``); after a change of kind its filters compare mismatched types
    (``operator does not exist: character varying = integer``) and its reads hand the code
    values of another Python type. Whether the old release really writes such values depends
    on the data: hence a warning. Existing values that do not fit are D206.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Category", [
            ("id", models.BigAutoField(primary_key=True)),
            ("sort_order", models.CharField(max_length=5, blank=True, default="")),
        ]),
    ]
    operations = [
        migrations.AlterField("category", "sort_order", models.IntegerField(default=0)),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Category", [
            ("id", models.BigAutoField(primary_key=True)),
            ("sort_order", models.CharField(max_length=5, blank=True, default="")),
        ]),
    ]
    # Add the new column beside the old one; the old release keeps writing `sort_order`.
    operations = [
        migrations.AddField("category", "position", models.IntegerField(null=True)),
    ]
    ```
    """

    id = "C106"
    sqlstates = ("22", "42")
    name = "column-type-incompatible"
    severity = Severity.WARNING
    message = (
        "`{table}`.`{column}` changes from `{old_type}` to `{new_type}` while the old release"
        " still writes it as `{old_type}`: {why}"
    )
    help = (
        "Add a new `{new_type}` column beside `{column}` and move reads and writes over"
        " across releases"
    )
    recipe_steps = (
        "This release: add a new nullable column of the new type beside `{column}` and write"
        " both from the new code (or keep them in sync with a trigger).",
        "Backfill the new column from `{table}`.`{column}` in batches, converting values.",
        "Next release (when no server runs the code from before {migration}): read only"
        " the new column.",
        "The release after that: remove `{column}` (state-only first, see C102).",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.AlterField):
            yield from self._alter_field(ctx, op)
        elif isinstance(op, migrations.RunSQL):
            yield from self._run_sql(ctx)

    def _alter_field(self, ctx: OperationContext, op: migrations.AlterField) -> Iterable[Finding]:
        if ctx.before is None or not ctx.table_in_s0 or op.field.many_to_many:
            return
        old_field = ctx.s0_field(op.name)
        if old_field is None or old_field.many_to_many:
            return
        previous = ctx.before.fields.get(op.name)
        if previous is not None and column_name(op.name, previous) != column_name(
            op.name, op.field
        ):
            return  # this operation renames the column too: C103 reports the old release

        connection = ctx.unit.connection
        if connection is None:
            return
        old_target = new_target = None
        if old_field.is_relation:
            key = related_target(ctx, old_field)
            old_target = None if key is None else ctx.unit.lineage.s0_model(key)
        if op.field.is_relation:
            key = related_target(ctx, op.field)
            new_target = None if key is None else ctx.unit.model_now(key)
        old = db_type(old_field, connection, old_target)
        new = db_type(op.field, connection, new_target)
        if old is None or new is None:
            return
        why = incompatibility(old, new, ctx.unit)
        if why is None:
            return
        yield self.finding(
            ctx,
            field=op.name,
            column=column_name(op.name, op.field),
            old_type=old,
            new_type=new,
            why=why,
        )

    def _run_sql(self, ctx: OperationContext) -> Iterable[Finding]:
        connection = None
        for action in sql_actions(ctx):
            if action.kind is not StatementKind.ALTER_COLUMN_TYPE or not action.columns:
                continue
            found = s0_column(ctx.unit, action.table, action.columns[0])
            if found is None or not action.value:
                continue
            model, name = found
            connection = connection or ctx.unit.connection
            if connection is None:
                return
            field = model.fields[name]
            target = None
            if field.is_relation:
                key = related_target(ctx, field)
                target = None if key is None else ctx.unit.lineage.s0_model(key)
            old = db_type(field, connection, target)
            if old is None:
                continue
            why = incompatibility(old, action.value, ctx.unit)
            if why is None:
                continue
            yield self.finding(
                ctx,
                model=model.name,
                table=model.db_table,
                field=name,
                column=action.columns[0],
                old_type=old,
                new_type=action.value,
                why=why,
            )
