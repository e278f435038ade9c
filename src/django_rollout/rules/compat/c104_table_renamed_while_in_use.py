"""C104: a table renamed while the old release still uses the old name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import ModelView
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import (
    backticked,
    is_auto_m2m,
    join_table,
    s0_target,
    sql_actions,
)
from django_rollout.vendors.base import StatementKind


def renamed_join_tables(before: ModelView, after: ModelView) -> list[tuple[str, str]]:
    """Return (old, new) names of the auto-created join tables renamed with the model."""
    pairs: list[tuple[str, str]] = []
    for name, field in before.fields.items():
        if not is_auto_m2m(field) or getattr(field, "db_table", None):
            continue
        new_field = after.fields.get(name)
        if new_field is None:
            continue
        old, new = join_table(before, name, field), join_table(after, name, new_field)
        if old != new:
            pairs.append((old, new))
    return pairs


class TableRenamedWhileInUse(Rule):
    """Table in S0 renamed while the old release still queries it by its old name.

    What it does
    ------------
    Flags ``RenameModel`` of a model without an explicit ``db_table``, ``AlterModelTable``
    that changes the table name, and ``RunSQL`` ``ALTER TABLE ... RENAME TO``, on a table of
    S0; and renaming a many-to-many field, which renames its join table. The auto-created
    join tables of the model's many-to-many fields are renamed with it and are named in the
    same finding. Silent when ``db_table`` keeps the name, for tables created in the same
    deploy unit, and for state-only operations.

    Why it breaks production
    ------------------------
    Every query the old release makes on the model names the old table. From the moment the
    rename commits until the last old server stops they fail with
    ``ProgrammingError: relation "..." does not exist``.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("ProductPhoto", [
            ("id", models.BigAutoField(primary_key=True)),
            ("image_url", models.URLField()),
        ]),
    ]
    operations = [
        migrations.RenameModel("ProductPhoto", "ProductImage"),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("ProductPhoto", [
            ("id", models.BigAutoField(primary_key=True)),
            ("image_url", models.URLField()),
        ]),
    ]
    # Pin the table name first: the rename is then a change of the code only.
    operations = [
        migrations.AlterModelTable("productphoto", "shop_productphoto"),
        migrations.RenameModel("ProductPhoto", "ProductImage"),
    ]
    ```
    """

    id = "C104"
    sqlstates = ("42P01",)
    name = "table-renamed-while-in-use"
    severity = Severity.ERROR
    message = (
        "`{table}` is renamed to `{new_table}` while the old release still queries"
        ' `{table}`{also}: its queries fail with `relation "{table}" does not exist`'
    )
    help = (
        'Keep the table name with `db_table = "{table}"` in the model\'s Meta and rename'
        " the model in code only"
    )
    recipe_steps = (
        'This release: keep the table: add `db_table = "{table}"` to the model\'s Meta'
        " before renaming the model, so the migration is `AlterModelTable` to the same name"
        " plus a `RenameModel` that runs no SQL.",
        "If the table name itself must change: rename it in the database and leave an"
        ' updatable view under the old name, in one transaction (`ALTER TABLE "{table}"'
        ' RENAME TO "{new_table}"; CREATE VIEW "{table}" AS SELECT * FROM'
        ' "{new_table}"`); then switch `db_table` to `{new_table}` in a release.',
        "Drop the view once no server runs code that uses `{table}`.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, (migrations.RenameModel, migrations.AlterModelTable)):
            yield from self._model_rename(ctx)
        elif isinstance(op, migrations.RenameField):
            yield from self._m2m_rename(ctx, op)
        elif isinstance(op, migrations.RunSQL):
            for action in sql_actions(ctx):
                if action.kind is not StatementKind.RENAME_TABLE:
                    continue
                model = ctx.unit.lineage.s0_model_for_table(action.table)
                if model is None:
                    continue
                yield self.finding(
                    ctx,
                    model=model.name,
                    table=model.db_table,
                    new_table=action.new_name or "",
                    also="",
                )

    def _model_rename(self, ctx: OperationContext) -> Iterable[Finding]:
        before, after = ctx.before, ctx.after
        s0 = s0_target(ctx)
        if before is None or after is None or s0 is None or not s0.has_table:
            return
        if not before.has_table or before.db_table == after.db_table:
            return
        joins = renamed_join_tables(before, after)
        also = f" (and join tables {backticked(old for old, _ in joins)})" if joins else ""
        yield self.finding(
            ctx,
            model=after.name,
            table=before.db_table,
            new_table=after.db_table,
            also=also,
            details={"join_tables": [list(pair) for pair in joins]},
        )

    def _m2m_rename(self, ctx: OperationContext, op: migrations.RenameField) -> Iterable[Finding]:
        before, after = ctx.before, ctx.after
        if before is None or after is None or not ctx.table_in_s0:
            return
        old_field: Any = before.fields.get(op.old_name)
        new_field: Any = after.fields.get(op.new_name)
        if old_field is None or new_field is None or not is_auto_m2m(old_field):
            return
        if ctx.s0_field(op.new_name) is None:
            return
        old, new = (
            join_table(before, op.old_name, old_field),
            join_table(after, op.new_name, new_field),
        )
        if old == new:
            return
        yield self.finding(
            ctx,
            field=op.new_name,
            table=old,
            new_table=new,
            also=f" (the join table of `{before.name}.{op.old_name}`)",
        )
