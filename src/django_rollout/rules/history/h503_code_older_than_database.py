"""H503: migrations recorded in the database that this code does not have."""

from __future__ import annotations

from django_rollout.findings import Severity
from django_rollout.rules.base import Rule


class CodeOlderThanDatabase(Rule):
    """The database has applied migrations this code does not know: the code is older.

    What it does
    ------------
    Lists the rows of ``django_migrations`` whose migration file this code lacks, for apps
    the code has (rows of apps no longer installed are reported as info), not counting the
    migrations a squash in the code replaces. It names the release the database needs: the
    git commit that added the newest unknown migration, when the history is in git.

    Why it breaks production
    ------------------------
    A rollback to an older release, or one stale server, runs code that does not know the
    schema: it selects columns that were renamed and inserts rows without columns that are now
    NOT NULL, and requests fail with 500s. Editing the records cannot fix it.

    Example
    -------
    ```python
    # django_migrations holds shop.0005_rename_sku (deployed by release 42);
    # this release's shop/migrations/ ends at 0004
    operations = []
    ```

    Use instead
    -----------
    ```python
    # Deploy a release that has shop.0005_rename_sku, or, with that release's code,
    # reverse it first: python manage.py migrate shop 0004, then deploy the older code.
    operations = []
    ```
    """

    id = "H503"
    name = "code-older-than-database"
    severity = Severity.ERROR
    message = (
        "the database has applied `{app_label}.{migration}`, which this code does not have:"
        " the code is older than the schema{release}"
    )
    help = "Deploy {needs}, or reverse the migration with that release before rolling back"
    recipe_steps = (
        "Deploy {needs}; it knows `{app_label}.{migration}`.",
        "To roll back for real, reverse first with the newer code:"
        " `python manage.py migrate {app_label} <the last migration this code has>`,"
        " then deploy the older code.",
    )
    docs_examples_run = False  # emitted by `doctor` from a live database
