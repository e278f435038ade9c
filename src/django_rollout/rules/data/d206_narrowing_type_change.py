"""D206: a column narrowed so that existing values may no longer fit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.data._schema import (
    casts_explicitly,
    column_of,
    db_type,
    few_rows,
    graded,
    runsql_actions,
    size_note,
    table_ref,
)
from django_rollout.vendors.base import DbType, parse_db_type
from django_rollout.vendors.base import StatementKind as K


class NarrowingTypeChange(Rule):
    """A narrowing type change on a column of S0: existing values may not fit.

    What it does
    ------------
    Compares the column type Django emits before and after an ``AlterField`` on a column
    that existed in S0 (``field.db_type()`` on the vendor and version judged), and the type of
    a RunSQL ``ALTER COLUMN ... TYPE``, and flags a change where some old value may not fit
    the new type, as the vendor's fact table decides (``type_change_narrows``): a shorter
    ``max_length``, fewer digits or decimal places, ``bigint`` to ``integer``, text to a
    number, a timestamp with fewer fractional digits. Stays silent for widening changes, the
    same type, relational fields (their type follows the target's primary key, judged there),
    columns added in the unit and tables created in the unit. With S0 row counts, an empty
    table makes it info. Text to ``json``/``jsonb`` (a ``TextField`` becoming a
    ``JSONField``) is info: whether it fails depends on the content, which is almost always
    JSON the application wrote; the message gives the query that counts the misfits.

    Why it breaks production
    ------------------------
    PostgreSQL converts every row under ACCESS EXCLUSIVE and stops at the first that does not
    fit: ``value too long for type character varying(50)``, ``numeric field overflow``,
    ``integer out of range``, ``invalid input syntax for type integer``. The migration fails
    on production data only, and (for decimal places) values that fit are silently rounded.
    Some narrowings never fail and lose data instead, and the message says so: where the
    field's class changes (``TextField`` to ``CharField``, ``CharField`` to ``SlugField``, a
    number to ``CharField``), Django converts with ``USING col::varchar(n)``, an explicit cast
    that cuts longer values; ``integer`` to ``boolean`` turns every non-zero value into true;
    a timestamp to ``date`` drops the time of day.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=200)),
        ]),
    ]
    operations = [
        migrations.AlterField("product", "name", models.CharField(max_length=120)),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=200)),
        ]),
    ]
    operations = [
        # Keep the column as wide as the data; enforce the shorter limit in forms and a
        # CHECK (length(name) <= 120) NOT VALID, validated once the long values are fixed.
        migrations.AlterField("product", "name", models.CharField(max_length=200)),
    ]
    ```
    """

    id = "D206"
    sqlstates = ("22",)
    name = "narrowing-type-change"
    severity = Severity.WARNING
    message = (
        "`{table}`.`{column}` narrows from `{old_type}` to `{new_type}`: any existing value"
        " that does not fit fails the migration (`value too long`, `numeric field overflow`,"
        " `out of range`, `invalid input syntax`){size}"
    )
    cut_message = (
        "`{table}`.`{column}` narrows from `{old_type}` to `{new_type}`: Django converts it"
        " with `USING {column}::{new_type}`, an explicit cast that silently cuts every"
        " existing value longer than {length} characters instead of failing{size}"
    )
    lossy_message = (
        "`{table}`.`{column}` narrows from `{old_type}` to `{new_type}`: the conversion never"
        " fails, but {loss}{size}"
    )
    round_message = (
        "`{table}`.`{column}` narrows from `{old_type}` to `{new_type}`: every existing value"
        " with more than {scale} decimal places is silently rounded{size}"
    )
    json_message = (
        "`{table}`.`{column}` changes from `{old_type}` to `{new_type}`: an existing value"
        " that is not valid JSON (an empty string included) fails the migration (`invalid"
        " input syntax for type json`); count them first with `SELECT count(*) FROM {table}"
        " WHERE NOT pg_input_is_valid({column}, '{new_type}')` (PostgreSQL 16+){size}"
    )
    help = (
        "Check that every value of `{table}`.`{column}` fits `{new_type}` and fix the others"
        " before narrowing, or keep the wider type"
    )
    recipe_steps = (
        "Deploy code that writes only values fitting `{new_type}` into `{column}` (form and"
        " serializer validation), so no new misfits appear.",
        "Find and fix the existing misfits in a migration of its own: e.g. SELECT id FROM"
        " {table} WHERE length({column}) > <new length> (or abs({column}) >= <new limit>),"
        ' RunPython with apps.get_model("{app_label}", "{model}") in batches.',
        "Then narrow the type; the change rewrites `{table}` under ACCESS EXCLUSIVE (see"
        " L303), or keep `{old_type}` and enforce the limit with a CHECK ... NOT VALID and"
        " VALIDATE CONSTRAINT.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if not isinstance(op, migrations.AlterField) or not ctx.table_in_s0:
            return
        if ctx.before is None or ctx.s0_field(op.name) is None:
            return
        old = ctx.before.fields.get(op.name)
        if old is None:
            return
        old_type = db_type(old, op.name, ctx.unit)
        new_type = db_type(op.field, op.name, ctx.unit)
        if not self._narrows(ctx, old_type, new_type):
            return
        assert old_type is not None and new_type is not None
        small = few_rows(ctx.unit, ctx.before.db_table, 0)
        json = _to_json(old_type, new_type)
        after = parse_db_type(new_type)
        silent = None if json else self._silent(ctx, old, op.field, op.name, old_type, after)
        yield self.finding(
            ctx,
            severity=Severity.INFO if json else graded(self.severity, small),
            message=self.json_message if json else silent,
            field=op.name,
            column=column_of(op.name, op.field),
            old_type=old_type,
            new_type=new_type,
            size=size_note(small),
            length=after.length,
            scale=after.scale,
            loss=_LOSSY_CASTS.get((parse_db_type(old_type).base, after.base), ""),
        )

    def _silent(
        self,
        ctx: OperationContext,
        old: models.Field[Any, Any],
        new: models.Field[Any, Any],
        name: str,
        old_type: str,
        after: DbType,
    ) -> str | None:
        """Return the message for a narrowing PostgreSQL carries out without an error."""
        if ctx.unit.vendor != "postgresql":
            return None
        before = parse_db_type(old_type)
        if after.base in ("varchar", "char") and after.length is not None:
            return self.cut_message if casts_explicitly(old, new, name, ctx.unit) else None
        if (before.base, after.base) in _LOSSY_CASTS:
            return self.lossy_message
        if before.base == after.base == "numeric" and after.precision is not None:
            digits = (before.precision or 0) - (before.scale or 0)
            if before.precision is not None and after.precision - (after.scale or 0) >= digits:
                return self.round_message  # only decimal places are lost
        return None

    @staticmethod
    def _narrows(ctx: OperationContext, old_type: str | None, new_type: str | None) -> bool:
        if old_type is None or new_type is None or old_type == new_type:
            return False
        return ctx.unit.facts.type_change_narrows(old_type, new_type)

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind is not K.ALTER_COLUMN_TYPE or not action.value:
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None:
                continue
            for column in action.columns:
                name = ref.field_of(column)
                if name is None or ref.s0_field(ctx.unit, column) is None:
                    continue
                old_type = db_type(ref.now.fields[name], name, ctx.unit)
                if not self._narrows(ctx, old_type, action.value):
                    continue
                small = few_rows(ctx.unit, ref.now.db_table, 0)
                json = _to_json(old_type, action.value)
                yield self.finding(
                    ctx,
                    severity=Severity.INFO if json else graded(self.severity, small),
                    message=self.json_message if json else None,
                    field=name,
                    column=column,
                    old_type=old_type,
                    new_type=action.value,
                    table=ref.now.db_table,
                    model=ref.now.name,
                    size=size_note(small),
                )


# Casts PostgreSQL always carries out, losing information (``USING col::type``).
_LOSSY_CASTS = {
    ("integer", "boolean"): "every value other than 0 becomes true",
    ("timestamp", "date"): "the time of day of every value is dropped",
    ("timestamptz", "date"): "the time of day of every value is dropped",
}


def _to_json(old_type: str | None, new_type: str | None) -> bool:
    """Return True for text to json/jsonb: whether values fit depends on their content,
    which is JSON the application wrote far more often than not (info, not a warning)."""
    old = (old_type or "").lower()
    textual = old == "text" or old.startswith(("varchar", "character varying", "char"))
    return textual and (new_type or "").lower() in ("json", "jsonb")
