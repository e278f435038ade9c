"""D207: a data migration rewriting the values of a unique column."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.source import relative
from django_rollout.rules.base import Rule
from django_rollout.rules.data._runpython import forward_facts
from django_rollout.rules.data._schema import (
    column_of,
    few_rows,
    graded,
    runsql_actions,
    size_note,
    table_ref,
    unique_fields,
    unique_shown,
    update_rewrites,
)
from django_rollout.vendors.base import StatementKind as K


class UniqueColumnRewriteCollision(Rule):
    """A data migration that rewrites a unique column: distinct values may collide.

    What it does
    ------------
    Flags ``RunPython`` forward code that writes a value computed from the row into a field
    under a unique constraint or index (``unique=True``, a ``UniqueConstraint`` or
    ``unique_together`` it takes part in, an expression index over it) of the model as the
    code now stands: ``.update(email=Lower("email"))``, ``.update(code=Concat(...))``, or
    ``obj.email = obj.email.strip().lower()`` / ``obj.slug = slugify(obj.title)`` on rows
    fetched from the model, then ``save()``/``bulk_update()``; and RunSQL
    ``UPDATE t SET col = lower(col)`` on a unique column of a table in S0. Stays silent for
    non-unique columns, read-only loops, constants and values not derived from the row
    (``uuid.uuid4()``), ``reverse_code``, and models looked up by a computed name. With S0
    row counts, a table of 0 or 1 rows makes it info.

    Why it breaks production
    ------------------------
    Normalising maps distinct values onto one: ``Ann@Example.com`` and ``ann@example.com``
    both become ``ann@example.com``. The second write fails with ``duplicate key value
    violates unique constraint``; the data migration stops halfway (and, if non-atomic,
    leaves half the rows rewritten). Test data rarely holds the near-duplicates that
    production has accumulated.

    Example
    -------
    ```python
    from django.db.models.functions import Lower

    def lowercase_emails(apps, schema_editor):
        Customer = apps.get_model("shop", "Customer")
        Customer.objects.update(email=Lower("email"))

    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.EmailField(max_length=254, unique=True)),
        ]),
    ]
    operations = [
        migrations.RunPython(lowercase_emails, migrations.RunPython.noop),
    ]
    ```

    Use instead
    -----------
    ```python
    from django.db.models.functions import Lower

    def lowercase_emails(apps, schema_editor):
        Customer = apps.get_model("shop", "Customer")
        # Normalise a non-unique copy; merge duplicates before it becomes the unique key.
        Customer.objects.update(email_normalized=Lower("email"))

    before = [
        migrations.CreateModel("Customer", [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.EmailField(max_length=254, unique=True)),
            ("email_normalized", models.EmailField(max_length=254, null=True)),
        ]),
    ]
    operations = [
        migrations.RunPython(lowercase_emails, migrations.RunPython.noop),
    ]
    ```
    """

    id = "D207"
    sqlstates = ("23505",)
    name = "unique-column-rewrite-collision"
    severity = Severity.WARNING
    message = (
        "`{call}` rewrites `{table}`.`{column}`, which is {unique}: values that were distinct"
        " may become equal and the migration fails halfway with `duplicate key value violates"
        " unique constraint`{size}"
    )
    help = (
        "Find the values of `{table}`.`{column}` that collide once rewritten, and merge them"
        " before the rewrite"
    )
    recipe_steps = (
        "Find the collisions first: SELECT <normalised {column}>, count(*) FROM {table}"
        " GROUP BY 1 HAVING count(*) > 1; decide which row wins for each.",
        "Merge or rename the duplicates (and repoint rows that reference the losers) in a"
        ' migration of its own: RunPython with apps.get_model("{app_label}", "{model}").',
        "Rewrite `{column}` in batches; deploy code that writes only normalised values first,"
        " so live writes do not create new near-duplicates meanwhile.",
        'Enforce it: UniqueConstraint(Lower("{column}"), name=...) built CONCURRENTLY (see'
        " D201, L301).",
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
        seen: set[tuple[str, str, int]] = set()
        for rewrite in facts.rewrites:
            model = ctx.unit.model_now(rewrite.key)
            if model is None or not model.has_table:
                continue
            field = model.fields.get(rewrite.field)
            if field is None or rewrite.field not in unique_fields(model):
                continue
            marker = (model.db_table, rewrite.field, rewrite.line)
            if marker in seen:
                continue
            seen.add(marker)
            small = few_rows(ctx.unit, model.db_table, 1)
            yield self.finding(
                ctx,
                severity=graded(self.severity, small),
                call=rewrite.call,
                field=rewrite.field,
                column=column_of(rewrite.field, field),
                unique=unique_shown(model, rewrite.field),
                model=model.name,
                table=model.db_table,
                size=size_note(small),
                location=Location(relative(facts.path), rewrite.line),
            )

    def _runsql(self, ctx: OperationContext) -> Iterable[Finding]:
        for action in runsql_actions(ctx):
            if action.kind is not K.UPDATE:
                continue
            ref = table_ref(ctx.unit, action.table)
            if ref is None:
                continue
            unique = unique_fields(ref.now)
            for column in update_rewrites(action.sql):
                name = ref.field_of(column)
                if name is None or name not in unique:
                    continue
                small = few_rows(ctx.unit, ref.now.db_table, 1)
                call = " ".join(action.sql.split())
                yield self.finding(
                    ctx,
                    severity=graded(self.severity, small),
                    call=call if len(call) <= 60 else call[:57] + "...",
                    field=name,
                    column=column,
                    unique=unique_shown(ref.now, name),
                    model=ref.now.name,
                    table=ref.now.db_table,
                    size=size_note(small),
                )
