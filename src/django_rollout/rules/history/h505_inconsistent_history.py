"""H505: a migration recorded before one of its dependencies."""

from __future__ import annotations

from django_rollout.findings import Severity
from django_rollout.rules.base import Rule


class InconsistentHistory(Rule):
    """A migration is recorded as applied while one of its dependencies is not.

    What it does
    ------------
    Walks the graph of the code and reports each recorded migration with an unrecorded
    dependency, with the dependency's evidence from the schema: applied without being
    recorded (record it), not applied (run it), or not observable (a data migration).

    Why it breaks production
    ------------------------
    Every ``migrate`` stops at once with ``InconsistentMigrationHistory: Migration
    shop.0003_price is applied before its dependency shop.0002_sku on database 'default'``,
    so nothing can be deployed to this database until the history is repaired.

    Example
    -------
    ```python
    # django_migrations: shop.0001_initial, shop.0003_price; not shop.0002_sku
    dependencies = [("shop", "0002_sku")]  # in shop.0003_price
    ```

    Use instead
    -----------
    ```python
    # Record 0002 when its changes are in the schema; otherwise run its operations.
    dependencies = [("shop", "0002_sku")]
    ```
    """

    id = "H505"
    name = "inconsistent-history"
    severity = Severity.ERROR
    message = (
        "`{app_label}.{migration}` is recorded but its dependency `{dependency}` is not:"
        " `migrate` stops with InconsistentMigrationHistory"
    )
    help = "Apply the repair `doctor` prints: {repair}"
    recipe_steps = (
        "{repair}",
        "Run `python manage.py migrate --check`: the history is consistent again.",
    )
    docs_examples_run = False  # emitted by `doctor` from a live database
