"""H504: a squash partly applied, or its replaced files deleted too early."""

from __future__ import annotations

from django_rollout.findings import Severity
from django_rollout.rules.base import Rule


class SquashPartlyApplied(Rule):
    """A squashed migration whose replaced migrations are only partly applied here.

    What it does
    ------------
    For each squashed migration (``replaces = [...]``) the code has, compares its replaced
    migrations with ``django_migrations``. Some recorded and some not: the database is in the
    middle of the squashed range. While the replaced files are still in the code Django
    finishes with them (warning: do not delete them yet); once they are deleted, Django can no
    longer tell what is missing (error), and the repair names the commit that still has them.

    Why it breaks production
    ------------------------
    With the replaced files deleted, ``migrate`` either re-runs the whole squash on a
    database that has half of it (``DuplicateTable``) or stops with
    ``NodeNotFoundError``; this environment cannot be migrated until the files come back.

    Example
    -------
    ```python
    # 0001_squashed_0003 replaces 0001, 0002, 0003; django_migrations has 0001 and 0002;
    # the files 0001..0003 were deleted in the same release that added the squash.
    replaces = [("shop", "0001_initial"), ("shop", "0002_sku"), ("shop", "0003_price")]
    ```

    Use instead
    -----------
    ```python
    # Keep the replaced files until every environment has applied the squash; delete them
    # (and the `replaces` list) in a later release.
    replaces = [("shop", "0001_initial"), ("shop", "0002_sku"), ("shop", "0003_price")]
    ```
    """

    id = "H504"
    name = "squash-partly-applied"
    severity = Severity.ERROR
    message = "`{app_label}.{migration}` is a squash partly applied here: {evidence}"
    help = "{repair}"
    recipe_steps = (
        "Keep (or restore) the replaced migration files until every environment has applied"
        " `{app_label}.{migration}`.",
        "Run `python manage.py migrate` here with the replaced files present.",
        "Delete the replaced files in a later release, once no environment is in the range.",
    )
    docs_examples_run = False  # emitted by `doctor` from a live database
