from __future__ import annotations

import pytest

from django_rollout.findings import Severity
from django_rollout.rules.code.m408_unused_suppression import UnusedSuppression
from django_rollout.rules.code.m409_sql_not_collected_offline import SqlNotCollectedOffline
from django_rollout.rules.registry import rule_by_id


def test_unused_suppression_is_registered_under_the_id_the_check_uses() -> None:
    from django_rollout.api import UNUSED_SUPPRESSION

    assert rule_by_id(UNUSED_SUPPRESSION) is UnusedSuppression
    assert rule_by_id("M409") is SqlNotCollectedOffline


def test_unused_suppression_formats_the_entry_as_the_check_builds_it() -> None:
    # api._unused_suppressions calls finding() with these names and no context.
    finding = UnusedSuppression().finding(
        suppressed_rule="C101", source="settings.ROLLOUT[ignore][0]", reason="backfilled by hand"
    )
    assert finding.rule == "M408"
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        "suppression of `C101` in settings.ROLLOUT[ignore][0] matches no finding: remove it or"
        " narrow it"
    )
    assert "backfilled by hand" in finding.help
    assert finding.app_label is None and finding.migration is None
    assert finding.operation_index is None
    assert all("{" not in step for step in finding.recipe)
    assert "settings.ROLLOUT[ignore][0]" in finding.recipe[1]


def test_sql_gap_formats_migration_and_error_as_the_check_builds_it() -> None:
    # api._sql_gaps calls finding(app_label=..., migration=..., error=...) with no context.
    finding = SqlNotCollectedOffline().finding(
        app_label="shop", migration="0009_partitions", error="RuntimeError: needs a cursor"
    )
    assert finding.rule == "M409"
    assert finding.severity is Severity.INFO
    assert finding.app_label == "shop" and finding.migration == "0009_partitions"
    assert finding.message == (
        "the SQL of `0009_partitions` cannot be produced without a database: RuntimeError:"
        " needs a cursor; it was judged from its operations only"
    )
    assert finding.help == (
        "Review its SQL with `manage.py sqlmigrate shop 0009_partitions` on a real database"
    )
    assert "sqlmigrate shop 0009_partitions" in finding.recipe[0]


@pytest.mark.parametrize("rule", [UnusedSuppression, SqlNotCollectedOffline])
def test_rules_emitted_by_the_check_have_no_runnable_docs_examples(rule: type) -> None:
    assert rule.docs_examples_run is False
