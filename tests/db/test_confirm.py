"""Matching a rehearsal's observations with the static findings (pure: no database).

The end-to-end confirmations run on PostgreSQL in ``test_rehearse.py``; these pin down the
matching itself, where it must confirm and where it must stay silent, for errors that a
rehearsal only sometimes sees (a deadlock, a lock timeout).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from django_rollout.db.confirm import confirm
from django_rollout.db.locks import Lock, Statement
from django_rollout.db.rehearse import Rehearsal, Step
from django_rollout.db.traffic import Observed
from django_rollout.findings import Finding, Severity

APP, MIGRATION = "catalog", "0010_product_category_required"
PRODUCT, CATEGORY, ORDERS = "catalog_product", "catalog_category", "orders_order"
DEADLOCK = "40P01"
LOCK_TIMEOUT = "55P03"


def _finding(rule: str, severity: Severity = Severity.WARNING, index: int = 1) -> Finding:
    return Finding(
        rule=rule,
        name="hazard",
        severity=severity,
        message="m",
        help="h",
        app_label=APP,
        migration=MIGRATION,
        operation_index=index,
    )


def _error(
    sqlstate: str, table: str | None, code_version: str | None = "old", step: str = MIGRATION
) -> Observed:
    return Observed(
        sqlstate,
        "deadlock detected" if sqlstate == DEADLOCK else "canceling statement",
        app_label=APP,
        migration=step,
        code_version=code_version,
        action=None if code_version is None else "update",
        table=table,
    )


def _rehearsal(*errors: Observed, failed: Observed | None = None) -> Rehearsal:
    step = Step(APP, MIGRATION, tables={1: frozenset({PRODUCT, CATEGORY})})
    if failed is not None:
        step.status, step.error = "failed", failed
    return Rehearsal("postgresql", "scratch", steps=[step], traffic_errors=list(errors))


def _by_rule(findings: list[Finding]) -> dict[str | None, Finding]:
    return {f.rule: f for f in findings}


@pytest.mark.parametrize("sqlstate", [DEADLOCK, LOCK_TIMEOUT])
@pytest.mark.parametrize("code_version", ["old", "new"])
def test_lock_error_of_traffic_on_a_locked_table_confirms_the_lock_finding(
    sqlstate: str, code_version: str
) -> None:
    out = confirm(
        [_finding("L305"), _finding("C107", Severity.ERROR)],
        _rehearsal(_error(sqlstate, PRODUCT, code_version)),
    )
    got = _by_rule(out)
    assert None not in got  # explained: no ``rule: null`` finding
    assert got["L305"].confirmed and got["L305"].code_version == code_version
    assert got["L305"].observed_error is not None and sqlstate in got["L305"].observed_error
    assert got["L305"].severity == Severity.WARNING  # the release waited and lost, not the deploy
    assert got["C107"].confirmed is False  # a deadlock is no not-null violation


def test_migration_that_dies_of_a_deadlock_confirms_the_lock_finding_as_an_error() -> None:
    out = confirm([_finding("L308")], _rehearsal(failed=_error(DEADLOCK, None, None)))
    [finding] = out
    assert finding.confirmed and finding.code_version is None
    assert finding.severity == Severity.ERROR


def test_lock_error_on_a_table_the_operation_does_not_touch_is_unexplained() -> None:
    out = confirm([_finding("L305")], _rehearsal(_error(DEADLOCK, ORDERS)))
    got = _by_rule(out)
    assert got["L305"].confirmed is False
    assert got[None].observed_error is not None and DEADLOCK in got[None].observed_error


def test_lock_error_on_a_table_the_finding_names_is_explained() -> None:
    # L308 at the first operation names every table the transaction then holds: a deadlock
    # on one a later operation locks (django-oscar's order.0014) is its to explain.
    named = replace(_finding("L308"), details=(("tables", (PRODUCT, ORDERS)),))
    out = confirm([named], _rehearsal(_error(DEADLOCK, ORDERS)))
    got = _by_rule(out)
    assert got["L308"].confirmed and None not in got
    out = confirm([named], _rehearsal(_error(DEADLOCK, "billing_invoice")))
    assert _by_rule(out)["L308"].confirmed is False


def test_lock_error_at_another_migration_is_unexplained() -> None:
    out = confirm([_finding("L305")], _rehearsal(_error(DEADLOCK, PRODUCT, step="0011_other")))
    assert _by_rule(out)["L305"].confirmed is False
    assert None in _by_rule(out)


@pytest.mark.parametrize("rule", ["C107", "D202", "M405"])
def test_lock_error_confirms_no_rule_outside_the_lock_family(rule: str) -> None:
    out = confirm([_finding(rule, Severity.ERROR)], _rehearsal(_error(DEADLOCK, PRODUCT)))
    got = _by_rule(out)
    assert got[rule].confirmed is False
    assert None in got


def test_other_errors_of_traffic_do_not_confirm_a_lock_finding() -> None:
    out = confirm([_finding("L304")], _rehearsal(_error("23502", PRODUCT)))
    got = _by_rule(out)
    assert got["L304"].confirmed is False
    assert None in got


def _waiting_step(traffic_wait_ms: float, lock_wait_ms: float | None) -> Rehearsal:
    rehearsal = _rehearsal()
    statement = Statement("ALTER TABLE catalog_product ...", started_ms=0.0, duration_ms=900.0)
    statement.locks = [Lock(PRODUCT, "AccessExclusiveLock", held_ms=900.0)]
    statement.traffic_wait_ms, statement.lock_wait_ms = traffic_wait_ms, lock_wait_ms
    rehearsal.steps[0].statements = [statement]
    return rehearsal


def test_a_wait_both_ways_is_said_in_the_confirmation() -> None:
    [finding] = confirm([_finding("L306")], _waiting_step(412.0, 640.4))
    assert finding.confirmed and finding.code_version == "old"
    assert finding.observed_error == (
        "traffic waited 412 ms behind its locks,"
        " and the migration waited 640 ms for locks traffic held"
    )


@pytest.mark.parametrize("lock_wait_ms", [None, 0.0, 0.4])
def test_no_queue_of_the_migration_no_mention(lock_wait_ms: float | None) -> None:
    [finding] = confirm([_finding("L306")], _waiting_step(412.0, lock_wait_ms))
    assert finding.observed_error == "traffic waited 412 ms behind its locks"


def test_the_migration_queueing_alone_confirms_nothing() -> None:
    # Waiting for traffic's locks is production's too, but no traffic waited behind it.
    [finding] = confirm([_finding("L306")], _waiting_step(0.0, 640.0))
    assert finding.confirmed is False


def _reference(column: str) -> Finding:
    found = _finding("C109", Severity.INFO, index=1)
    return replace(found, details=(("column", column), ("table", PRODUCT)))


def _fk_violation(column: str | None) -> Observed:
    return Observed(
        "23503",
        'update or delete on table "catalog_category" violates foreign key constraint',
        app_label=APP,
        migration=MIGRATION,
        code_version="old",
        action="delete",
        table=PRODUCT,
        column=column,
        constraint="catalog_product_fk",
    )


def test_a_violation_confirms_the_reference_through_its_own_column_only() -> None:
    out = confirm(
        [_reference("category_id"), _reference("brand_id")],
        _rehearsal(_fk_violation("category_id")),
    )
    got = {dict(f.details).get("column"): f for f in out}
    assert got["category_id"].confirmed and got["category_id"].code_version == "old"
    assert got["brand_id"].confirmed is False
    assert None not in {f.rule for f in out}  # explained


def test_a_violation_through_an_unknown_column_confirms_neither() -> None:
    out = confirm([_reference("category_id")], _rehearsal(_fk_violation("owner_id")))
    assert [f.confirmed for f in out if f.rule == "C109"] == [False]
    [unexplained] = [f for f in out if f.rule is None]
    assert unexplained.code_version == "old"


def test_a_violation_that_names_no_column_confirms_by_table_as_before() -> None:
    out = confirm(
        [_reference("category_id"), _reference("brand_id")], _rehearsal(_fk_violation(None))
    )
    assert all(f.confirmed for f in out) and len(out) == 2


# One deploy of several migrations: one old release serves beside all of them.
FIRST, SECOND, LAST = "0016_line_flag", "0017_other", "0018_last"
LINES = "orders_line"


def _unit(*errors: Observed, one_release: bool = True) -> Rehearsal:
    steps = [Step(APP, name, tables={0: frozenset({LINES})}) for name in (FIRST, SECOND, LAST)]
    return Rehearsal(
        "postgresql", "scratch", steps=steps, traffic_errors=list(errors), one_release=one_release
    )


def _c(rule: str, migration: str, column: str | None = None) -> Finding:
    details = (("table", LINES), ("column", column)) if column else ()
    return replace(_finding(rule, Severity.ERROR, index=0), migration=migration, details=details)


def _violation(sqlstate: str, step: str, column: str | None = "flag") -> Observed:
    return replace(
        _error(sqlstate, LINES, "old", step), message=f"{sqlstate} on {column}", column=column
    )


def test_one_release_failing_again_after_later_migrations_is_one_failure() -> None:
    # The old release inserts without the column 0016 added, after 0016 and after each
    # migration after it: the finding at 0016 explains all three.
    errors = [_violation("23502", step) for step in (FIRST, SECOND, LAST)]
    out = confirm([_c("C101", FIRST, "flag")], _unit(*errors))
    assert [f.rule for f in out] == ["C101"] and out[0].confirmed


def test_an_unpredicted_failure_going_on_is_reported_once_where_it_began() -> None:
    errors = [_violation("42703", step) for step in (SECOND, LAST)]
    out = confirm([], _unit(*errors))
    [unexplained] = out
    assert unexplained.rule is None and unexplained.migration == SECOND
    assert "again after 1 later migration(s) of the deploy" in unexplained.message


def test_every_migration_its_own_deploy_keeps_each_release_s_failure() -> None:
    # Each step has its own old release: two releases failing are two failures.
    errors = [_violation("42703", step) for step in (SECOND, LAST)]
    out = confirm([], _unit(*errors, one_release=False))
    assert sorted(f.migration or "" for f in out) == [SECOND, LAST]
    assert not any("again after" in f.message for f in out)


def test_a_failure_that_needs_the_new_release_confirms_an_earlier_migration_s_finding() -> None:
    # C109: the old release deletes what the new release's rows point at, which it can only
    # do at the rollout after the last migration; the reference came at 0016.
    violation = _violation("23503", LAST, column="line_id")
    out = confirm([_c("C109", FIRST, "line_id")], _unit(violation))
    assert [f.rule for f in out] == ["C109"]
    assert out[0].confirmed and out[0].code_version == "old"
    # ... but not when every migration was its own deploy, nor for another reference.
    out = confirm([_c("C109", FIRST, "line_id")], _unit(violation, one_release=False))
    assert {f.rule: f.confirmed for f in out} == {"C109": False, None: True}
    out = confirm([_c("C109", FIRST, "order_id")], _unit(violation))
    assert {f.rule: f.confirmed for f in out} == {"C109": False, None: True}


def test_a_later_failure_confirms_no_earlier_finding_it_could_not_cause() -> None:
    # Not before its migration: a failure seen at 0016 cannot confirm a finding at 0018.
    out = confirm([_c("C101", LAST, "flag")], _unit(_violation("23502", FIRST)))
    assert {f.rule: f.confirmed for f in out} == {"C101": False, None: True}
    # Not a lock finding: its locks are its own migration's; a later deadlock is not them.
    deadlock = _error(DEADLOCK, LINES, "old", LAST)
    out = confirm([replace(_finding("L305", index=0), migration=FIRST)], _unit(deadlock))
    assert {f.rule: f.confirmed for f in out} == {"L305": False, None: True}
    # Nor one explained where it happened: the later migration's own finding has it.
    out = confirm(
        [_c("C101", FIRST, "flag"), _c("C101", LAST, "flag")],
        _unit(_violation("23502", LAST)),
    )
    assert [(f.migration, f.confirmed) for f in out] == [(FIRST, False), (LAST, True)]


@pytest.mark.parametrize("sqlstate", ["42703", "42P01"])
def test_a_live_model_in_a_data_migration_is_confirmed_by_the_migrations_own_failure(
    sqlstate: str,
) -> None:
    failed = _error(sqlstate, PRODUCT, code_version=None)
    [finding] = confirm([_finding("M402", Severity.ERROR)], _rehearsal(failed=failed))
    assert finding.confirmed and finding.code_version is None


def test_a_live_model_is_not_confirmed_by_live_codes_missing_column() -> None:
    # The old release failing on a dropped column is C102's, not the data migration's.
    out = confirm([_finding("M402", Severity.ERROR)], _rehearsal(_error("42703", PRODUCT)))
    got = _by_rule(out)
    assert got["M402"].confirmed is False
    assert None in got
