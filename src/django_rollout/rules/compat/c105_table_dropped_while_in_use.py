"""C105: a table dropped while the old release still uses it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import (
    auto_join_tables,
    backticked,
    is_auto_m2m,
    join_table,
    s0_column_field,
    s0_target,
    sql_actions,
)
from django_rollout.vendors.base import StatementKind


class TableDroppedWhileInUse(Rule):
    """Table of S0 dropped while the old release's models still use it.

    What it does
    ------------
    Flags ``DeleteModel`` of a managed, non-proxy model whose table is in S0, ``RemoveField``
    of a many-to-many field whose join table Django created (the join table is dropped), and
    ``RunSQL`` ``DROP TABLE`` of a table an S0 model is stored in. A deleted model's own
    join tables are named in the same finding. Silent for proxy and unmanaged models, tables
    created in the same deploy unit, state-only deletions (``SeparateDatabaseAndState``), and
    tables whose model S0 no longer has (the second release of the two-release pattern).

    Why it breaks production
    ------------------------
    The old release keeps querying the table — directly, through related managers, and in
    the cascade it collects before deleting a parent row — and every such query fails with
    ``ProgrammingError: relation "..." does not exist`` until the last old server stops.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Wishlist", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=50)),
        ]),
    ]
    operations = [
        migrations.DeleteModel("Wishlist"),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Wishlist", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=50)),
        ]),
    ]
    # Release 1: the code forgets the model; the table stays.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel("Wishlist")],
        ),
    ]
    ```
    """

    id = "C105"
    sqlstates = ("42P01",)
    name = "table-dropped-while-in-use"
    severity = Severity.ERROR
    message = (
        "`{table}`{also} is dropped while the old release's `{model}` still uses it: its"
        ' queries fail with `relation "{table}" does not exist`'
    )
    help = (
        "Delete `{model}` from the models state-only in this release; drop `{table}` in the"
        " next one"
    )
    recipe_steps = (
        "This release: stop using `{model}` in the code and remove it from the state only:"
        " `migrations.SeparateDatabaseAndState(state_operations=[...the DeleteModel or"
        " RemoveField...])`. Foreign keys from other tables to `{table}` must go first, the"
        " same way.",
        "Deploy it; the old release keeps using `{table}`.",
        "Next release (when no server runs the code from before {migration}): drop it with"
        " `migrations.RunSQL('DROP TABLE \"{table}\"', reverse_sql=migrations.RunSQL.noop)`.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.DeleteModel):
            s0 = s0_target(ctx)
            before = ctx.before
            if s0 is None or before is None or not s0.has_table or not before.has_table:
                return
            joins = auto_join_tables(before)
            yield self.finding(
                ctx,
                model=before.name,
                table=before.db_table,
                also=f" (with join tables {backticked(joins)})" if joins else "",
                details={"join_tables": joins},
            )
        elif isinstance(op, migrations.RemoveField):
            yield from self._join_table(ctx, op)
        elif isinstance(op, migrations.RunSQL):
            for action in sql_actions(ctx):
                if action.kind is not StatementKind.DROP_TABLE:
                    continue
                model = ctx.unit.lineage.s0_model_for_table(action.table)
                if model is None:
                    continue
                yield self.finding(ctx, model=model.name, table=model.db_table, also="")

    def _join_table(self, ctx: OperationContext, op: migrations.RemoveField) -> Iterable[Finding]:
        before = ctx.before
        s0 = s0_target(ctx)
        if before is None or s0 is None or not s0.has_table:
            return
        field = before.fields.get(op.name)
        if field is None or not is_auto_m2m(field):
            return
        # An M2M field has no column: follow it by name to the S0 model.
        s0_field = s0_column_field(ctx, op.name, field) or s0.fields.get(op.name)
        if s0_field is None or not is_auto_m2m(s0_field):
            return
        yield self.finding(
            ctx,
            model=f"{before.name}.{op.name}",
            table=join_table(before, op.name, field),
            also=" (a many-to-many join table)",
        )
