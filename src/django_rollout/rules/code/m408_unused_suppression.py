"""M408: a suppression that matches no finding."""

from __future__ import annotations

from django_rollout.findings import Severity
from django_rollout.rules.base import Rule


class UnusedSuppression(Rule):
    """A suppression that matches no finding: it hides the next real one.

    What it does
    ------------
    Reports an ``ignore`` entry of the configuration (``ROLLOUT["ignore"]`` in the Django
    settings or ``[tool.django-rollout]`` in ``pyproject.toml``) that suppressed nothing in
    this run. The check itself emits it after matching suppressions against the findings; the
    rule only carries its message and documentation.

    Why it breaks production
    ------------------------
    A suppression outlives its reason: the migration was fixed, renamed or squashed, and the
    entry stays. A broad one (a rule for a whole app) then silently swallows the next real
    hazard of that rule, and nobody reviews it because nothing points at it.

    Example
    -------
    ```python
    # settings.py: C101 no longer fires on shop.0007 (it has a db_default now)
    ROLLOUT = {"ignore": [{"rule": "C101", "app_label": "shop", "migration": "0007_sku",
                           "reason": "backfilled by hand"}]}
    ```

    Use instead
    -----------
    ```python
    # settings.py: remove the entry, or narrow it to the migration that still needs it
    ROLLOUT = {"ignore": []}
    ```
    """

    id = "M408"
    name = "unused-suppression"
    severity = Severity.WARNING
    message = (
        "suppression of `{suppressed_rule}` in {source} matches no finding: remove it or"
        " narrow it"
    )
    help = "Delete the `{suppressed_rule}` entry from {source} (its reason: {reason})"
    recipe_steps = (
        "Check why `{suppressed_rule}` no longer fires there: the migration was fixed, renamed"
        " or squashed.",
        "Delete the entry from {source}; if the hazard is still expected elsewhere, name that"
        " app and migration exactly.",
    )
    docs_examples_run = False  # emitted by the check, from the configuration
