"""H501: a migration recorded as applied whose schema changes are not in the database."""

from __future__ import annotations

from django_rollout.findings import Severity
from django_rollout.rules.base import Rule


class RecordedButNotInSchema(Rule):
    """A migration is recorded in ``django_migrations`` but its schema changes are missing.

    What it does
    ------------
    ``doctor`` reads the schema once and compares it with what each recorded migration's
    *database* operations produce (``SeparateDatabaseAndState`` counts its database side
    only), by definition: a column with its type and nullability, a table, an index or a
    constraint on the same columns, whatever its name. A recorded migration whose changes
    are absent, or were undone by hand, is reported with each missing object as evidence.

    Why it breaks production
    ------------------------
    Django trusts the record: ``migrate`` skips the migration, and the first request that
    reads the column fails with ``ProgrammingError: column "sku" does not exist``. Someone
    ran ``migrate --fake``, restored an older dump over newer records, or dropped the column.

    Example
    -------
    ```python
    # shop.0002_product_sku is in django_migrations, but shop_product has no column sku
    operations = [migrations.AddField("product", "sku", models.CharField(max_length=20, null=True))]
    ```

    Use instead
    -----------
    ```python
    # Un-record it and run it, or run the missing operations, as `doctor` writes out:
    #   DELETE FROM django_migrations WHERE app = 'shop' AND name = '0002_product_sku';
    #   python manage.py migrate shop 0002_product_sku
    ```
    """

    id = "H501"
    name = "recorded-migration-not-in-schema"
    severity = Severity.ERROR
    message = (
        "`{app_label}.{migration}` is recorded as applied but {evidence}: `migrate` skips it"
        " and queries that need it fail"
    )
    help = "Apply the repair `doctor` prints: {repair}"
    recipe_steps = (
        "Back up `django_migrations` (doctor --apply writes the rows it changes to a JSON file).",
        "{repair}",
        "Run `django-rollout doctor` again: `{app_label}.{migration}` is no longer reported.",
    )
    docs_examples_run = False  # emitted by `doctor` from a live database
