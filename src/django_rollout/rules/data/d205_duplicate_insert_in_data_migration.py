"""D205: a data migration inserting rows that may already have been written."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import ModelKey
from django_rollout.graph.source import relative
from django_rollout.rules.base import Rule
from django_rollout.rules.data._runpython import forward_facts
from django_rollout.rules.data._schema import (
    earlier_operations,
    insert_handles_conflicts,
    runsql_actions,
    table_ref,
    walk_operations,
)
from django_rollout.vendors.base import StatementKind as K


class DuplicateInsertInDataMigration(Rule):
    """A data migration that inserts rows another writer may already have written.

    What it does
    ------------
    Flags ``RunPython`` forward code that inserts with no conflict handling:
    ``Model.objects.create(...)``, ``bulk_create(...)`` without ``ignore_conflicts=True`` /
    ``update_conflicts=True``, or ``Model(...)`` then ``.save()`` (without an explicit
    ``pk``, which makes ``save()`` an UPDATE-or-INSERT), on a model looked up with a
    literal ``apps.get_model("app", "Model")``; and RunSQL ``INSERT`` into a table of S0
    without ``ON CONFLICT`` or a ``WHERE NOT EXISTS`` guard. It fires when the table is in
    S0 (the old release writes it while the migration runs), or when it was created earlier
    in the deploy unit or in a non-atomic migration: between the two steps the new release's
    start-up code (``AppConfig.ready()``, which also runs when ``manage.py migrate`` starts)
    or a half-run deploy that is retried may have written the same rows. A table created by
    the same atomic migration is silent: nothing else can see it before the insert commits.
    Also silent: ``get_or_create``, ``update_or_create``, ``.update(...)``, an insert
    inside an ``if`` that queries the model first, in the ``except DoesNotExist`` of a
    lookup, catching ``IntegrityError`` inside ``transaction.atomic()`` (a savepoint) or in
    a non-atomic migration (without a savepoint, on PostgreSQL, the swallowed error aborts
    the migration's transaction: flagged with that message), or driven by a loop over rows
    selected for lacking one (``Order.objects.filter(invoices__isnull=True)``);
    ``reverse_code``; models looked up by a computed name (unknown). Only the forward
    function's own body is read.

    Why it breaks production
    ------------------------
    The rows are already there: with a unique key the migration fails with
    ``duplicate key value violates unique constraint`` (django-constance's copy into its new
    table collided with the keys the new release wrote at start-up); without one, rows are
    silently duplicated (two "editors" groups, two default settings rows) and later
    ``get()`` calls raise ``MultipleObjectsReturned``. A retried half-run copies everything
    twice.

    Example
    -------
    ```python
    def add_editor_group(apps, schema_editor):
        Group = apps.get_model("shop", "Group")
        Group.objects.create(name="editors")

    before = [
        migrations.CreateModel("Group", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=150, unique=True)),
        ]),
    ]
    operations = [
        migrations.RunPython(add_editor_group, migrations.RunPython.noop),
    ]
    ```

    Use instead
    -----------
    ```python
    def add_editor_group(apps, schema_editor):
        Group = apps.get_model("shop", "Group")
        Group.objects.get_or_create(name="editors")

    before = [
        migrations.CreateModel("Group", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=150, unique=True)),
        ]),
    ]
    operations = [
        migrations.RunPython(add_editor_group, migrations.RunPython.noop),
    ]
    ```
    """

    id = "D205"
    name = "duplicate-insert-in-data-migration"
    severity = Severity.WARNING
    message = (
        "`{call}` inserts into `{table}`, which {writers} may already have written: the"
        " migration fails with `duplicate key value violates unique constraint`, or the rows"
        " are duplicated"
    )
    absorbed_message = (
        "`{call}` swallows `IntegrityError` inside the migration's transaction: on PostgreSQL"
        " a clash with rows already in `{table}` aborts the transaction and the next statement"
        " fails with `current transaction is aborted`"
    )
    help = (
        "Make the insert idempotent: `get_or_create`/`update_or_create`, `bulk_create(...,"
        " ignore_conflicts=True)`, or `INSERT ... ON CONFLICT DO NOTHING`"
    )
    recipe_steps = (
        "Key every inserted row on its natural key (a unique field of `{model}`) and write it"
        " with {model}.objects.update_or_create(<key>=..., defaults={{...}}) or"
        " get_or_create(...), so rows already written are kept, not duplicated.",
        "For many rows: {model}.objects.bulk_create(objs, ignore_conflicts=True) (or"
        " update_conflicts=True, unique_fields=[...], update_fields=[...]) in batches;"
        " in SQL: INSERT INTO {table} ... ON CONFLICT (<key>) DO NOTHING.",
        "If start-up code of the new release writes `{table}` too, make both writers use the"
        " same natural key, so whichever runs second finds the row.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.RunSQL):
            yield from self._runsql(ctx)
            return
        if not isinstance(op, migrations.RunPython):
            return
        facts = forward_facts(op, ctx.app_label)
        if facts is None:
            return
        seen: set[tuple[ModelKey, int]] = set()
        for insert in facts.inserts:
            if (insert.key, insert.line) in seen:
                continue
            seen.add((insert.key, insert.line))
            writers = self._writers(ctx, insert.key)
            model = ctx.unit.model_now(insert.key)
            if writers is None or model is None:
                continue
            # Swallowing the clash works only where a failed statement does not poison the
            # transaction: outside one (non-atomic), or on a vendor that keeps it usable.
            if insert.absorbed and not (ctx.atomic and ctx.unit.vendor == "postgresql"):
                continue
            yield self.finding(
                ctx,
                message=self.absorbed_message if insert.absorbed else None,
                call=insert.call,
                writers=writers,
                model=model.name,
                table=model.db_table,
                location=Location(relative(facts.path), insert.line),
            )

    def _writers(self, ctx: OperationContext, key: ModelKey) -> str | None:
        """Return who else may have written the table, or None when nobody can have."""
        if ctx.unit.in_s0(key):
            return "the release still serving, start-up code or an earlier half-run"
        if ctx.unit.model_now(key) is None:
            return None
        created_here = any(
            isinstance(op, migrations.CreateModel) and (ctx.app_label, op.name_lower) == key
            for op in walk_operations(earlier_operations(ctx))
        )
        if created_here and ctx.atomic:
            return None
        return "the new release's start-up code or an earlier half-run"

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind is not K.INSERT or insert_handles_conflicts(action.sql):
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None:
                continue
            call = " ".join(action.sql.split())
            yield self.finding(
                ctx,
                call=call if len(call) <= 60 else call[:57] + "...",
                writers="the release still serving, start-up code or an earlier half-run",
                model=ref.now.name,
                table=ref.now.db_table,
            )
