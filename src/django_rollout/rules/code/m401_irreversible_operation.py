"""M401: an operation that cannot be reversed."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import migrations

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.rules.base import Rule


class IrreversibleOperation(Rule):
    """An operation that cannot be reversed: the deploy cannot be rolled back with `migrate`.

    What it does
    ------------
    Flags a ``RunPython`` without ``reverse_code``, a ``RunSQL`` without ``reverse_sql``, and
    any other operation that declares ``reversible = False``. ``RunPython.noop`` and
    ``RunSQL.noop`` given as the reverse count as reversible. Operations that only change
    Django's state (``SeparateDatabaseAndState``'s ``state_operations``) never run against the
    database and are not judged.

    Why it breaks production
    ------------------------
    Rolling back a release means migrating back to the previous release's leaf nodes. Django
    stops at the first operation it cannot reverse with
    ``IrreversibleError: Operation <RunPython ...> in shop.0004_... is not reversible``, and the
    rollback is stuck exactly when it is needed: during an incident, with the new code already
    withdrawn and the schema still ahead of the old release.

    Example
    -------
    ```python
    def fill_slugs(apps, schema_editor):
        Product = apps.get_model("shop", "Product")
        Product.objects.filter(slug="").update(slug="n-a")

    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("slug", models.CharField(max_length=50, blank=True)),
        ]),
    ]
    operations = [migrations.RunPython(fill_slugs)]
    ```

    Use instead
    -----------
    ```python
    def fill_slugs(apps, schema_editor):
        Product = apps.get_model("shop", "Product")
        Product.objects.filter(slug="").update(slug="n-a")

    before = [
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("slug", models.CharField(max_length=50, blank=True)),
        ]),
    ]
    operations = [migrations.RunPython(fill_slugs, reverse_code=migrations.RunPython.noop)]
    ```
    """

    id = "M401"
    name = "irreversible-operation"
    severity = Severity.WARNING
    message = (
        "`{operation}` in `{migration}` has no reverse: migrating back to the previous release"
        " stops with `IrreversibleError`"
    )
    help = "Give it a reverse ({reverse_hint}), `noop` when there is nothing to undo"
    recipe_steps = (
        "Decide what undoing `{migration}` means for the data: if the previous release works"
        " with the rows as they are, the reverse is a no-op.",
        "Add the reverse: `{reverse_hint}` (a real inverse when the old release needs the old"
        " values back).",
        "Test the rollback before deploying: `python manage.py migrate {app_label} <previous"
        " migration>` on a copy of the data, then forward again.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        op = ctx.operation
        if isinstance(op, migrations.SeparateDatabaseAndState):
            return  # its inner operations are judged one by one
        if getattr(op, "reversible", True) is not False:
            return
        if isinstance(op, migrations.RunPython):
            hint = "`reverse_code=migrations.RunPython.noop` or a reverse function"
        elif isinstance(op, migrations.RunSQL):
            hint = "`reverse_sql=migrations.RunSQL.noop` or the inverse SQL"
        else:
            hint = "implement `database_backwards` and set `reversible = True`"
        yield self.finding(ctx, operation=type(op).__name__, reverse_hint=hint)
