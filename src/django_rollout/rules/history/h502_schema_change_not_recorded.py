"""H502: schema changes in the database whose migration is not recorded."""

from __future__ import annotations

from django_rollout.findings import Severity
from django_rollout.rules.base import Rule


class SchemaChangeNotRecorded(Rule):
    """The database already holds a migration's changes, but ``django_migrations`` does not.

    What it does
    ------------
    For each migration the code has and the database has not recorded, ``doctor`` checks
    whether its changes are already in the schema (compared by definition, not by name). All
    present: the migration was applied without being recorded, a ``--fake`` is due. Some
    present: it was half-applied, typically a non-atomic migration (``atomic = False``) that
    failed halfway; the operations that ran are named, and the repair finishes the rest.

    Why it breaks production
    ------------------------
    ``migrate`` runs it again and dies on its first statement, ``DuplicateColumn: column
    "sku" of relation "shop_product" already exists``, and every later migration of the deploy
    waits behind it. A half-applied non-atomic migration cannot be re-run at all.

    Example
    -------
    ```python
    # shop_product.sku exists (added by hand during an incident); 0002 is not recorded
    operations = [migrations.AddField("product", "sku", models.CharField(max_length=20, null=True))]
    ```

    Use instead
    -----------
    ```python
    # Record it (what `doctor --apply` does, after a JSON backup of the rows):
    #   INSERT INTO django_migrations (app, name, applied)
    #   VALUES ('shop', '0002_product_sku', CURRENT_TIMESTAMP);
    ```
    """

    id = "H502"
    name = "schema-change-not-recorded"
    severity = Severity.WARNING
    message = (
        "`{app_label}.{migration}` is not recorded but {evidence}: `migrate` would run it"
        " again and fail"
    )
    help = "Apply the repair `doctor` prints: {repair}"
    recipe_steps = (
        "Check the evidence: the objects listed are in the database already.",
        "{repair}",
        "Run `django-rollout doctor` again, then `python manage.py migrate --check`.",
    )
    docs_examples_run = False  # emitted by `doctor` from a live database
