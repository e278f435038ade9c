"""L303: a change that rewrites the table under a lock that blocks traffic."""

from __future__ import annotations

from collections.abc import Iterable

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.locks._statements import (
    K,
    details,
    grade,
    locks_for,
    mode_name,
    size_text,
)

# Rewrites other rules own: TRUNCATE empties the table (a data change, not a rewrite hazard).
_OWN = frozenset({K.ALTER_COLUMN_TYPE, K.ADD_COLUMN_VOLATILE_DEFAULT})


class TableRewrite(Rule):
    """A change that rewrites every row of a table in S0 under an exclusive lock.

    What it does
    ------------
    Flags a column type change that the database cannot do in place (``IntegerField`` to
    ``BigIntegerField``, ``CharField`` to ``IntegerField``, a shorter ``max_length``), a
    column added with a volatile ``db_default`` (``gen_random_uuid()``, ``random()``,
    ``clock_timestamp()``) or a stored ``GeneratedField``, and ``RunSQL`` ``ALTER COLUMN
    ... TYPE`` of the same kind. The vendor's fact table decides which type changes rewrite:
    on PostgreSQL a longer ``varchar``, ``varchar`` to ``text`` or more ``numeric`` precision
    does not. On SQLite every type change rebuilds the table (Django's ``_remake_table``).
    Silent for tables created in the deploy unit and state-only operations.

    Why it breaks production
    ------------------------
    The table is copied row by row under ACCESS EXCLUSIVE (PostgreSQL) or the database write
    lock (SQLite), and every index is rebuilt: no query can read or write the table until it
    commits, and the rewrite needs as much free disk again as the table and its indexes.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.AutoField(primary_key=True)),
            ("quantity", models.IntegerField()),
        ]),
    ]
    operations = [
        migrations.AlterField("order", "quantity", models.BigIntegerField()),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Order", [
            ("id", models.AutoField(primary_key=True)),
            ("quantity", models.IntegerField()),
        ]),
    ]
    operations = [
        migrations.AddField("order", "quantity_big", models.BigIntegerField(null=True)),
    ]
    ```
    """

    id = "L303"
    name = "table-rewrite"
    severity = Severity.WARNING
    message = "`{migration}` rewrites every row of `{table}`{size} under {mode}: {why}"
    help = "Add a new column, backfill it in batches and switch to it, instead of rewriting"
    recipe_steps = (
        "This release: add the new column nullable, with no volatile default:"
        ' `AddField("{model_lower}", "{column}_new", <new field>(null=True))`.',
        "Write both columns from the new code (or a trigger), and backfill `{column}_new` in"
        " batches from a non-atomic migration or a management command.",
        "Next release: read from `{column}_new`; then drop `{column}` and rename in a later"
        " release (see C102/C103), or keep the new name with `db_column`.",
        "For a volatile default: add the column without it, set the default with a separate"
        " `ALTER COLUMN ... SET DEFAULT` (new rows only) and backfill existing rows in batches.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        for lock in locks_for(ctx):
            step = lock.step
            if step.kind not in _OWN or not step.hot or not lock.rewrites:
                continue
            if lock.table_mode is None or not lock.table_mode.blocks_writes:
                continue
            column = step.columns[0] if step.columns else ""
            if step.kind is K.ALTER_COLUMN_TYPE:
                change = (
                    f"`{step.old_type}` to `{step.new_type}`"
                    if step.old_type
                    else f"to `{step.new_type}`"
                )
                why = f"`{column}` changes type {change}"
            else:
                why = f"`{column}` is added with a default computed for each row"
            note = lock.fact.note if not lock.table_mode.blocks_reads else ""
            if note:
                why = f"{why} ({note})"
            yield self.finding(
                ctx,
                severity=grade(ctx.unit, self.severity, step.rows),
                table=step.table,
                size=size_text(step.rows),
                mode=mode_name(lock.table_mode),
                why=why,
                column=column,
                model_lower=ctx.model.name.lower() if ctx.model else "",
                details=details(
                    rows=step.rows,
                    lock=lock.table_mode.pg_name,
                    old_type=step.old_type,
                    new_type=step.new_type,
                ),
            )
