"""pytest plugin: rehearse the project's pending migrations from its own test suite.

Registered through the ``pytest11`` entry point, so every pytest run in an environment
that has django-rollout installed loads this module. It must stay inert there: nothing here
imports Django or reads settings until a test asks for the ``rollout_rehearsal`` fixture
and calls what it returns.

The rehearsal runs in the test process, with the settings that pytest-django (or
``DJANGO_SETTINGS_MODULE``) gave it. It never touches the test database: it creates a
scratch database on the server of ``default`` through an alias of its own and drops it
afterwards. pytest-django blocks database access outside tests marked ``django_db``, so
the rehearsal runs inside ``django_db_blocker.unblock()`` when that fixture exists. While
the scratch database lives, ``default`` leads to it (see ``db/scratch.py``), so a test
that also opens the test database (``db``, ``transactional_db``, the ``django_db`` mark) is
refused.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from django_rollout.api import Report
    from django_rollout.findings import Severity
    from django_rollout.graph.context import StartupQuery

# Synthetic rows per table: enough to break a unique index or a NOT NULL, quick to seed.
QUICK_ROWS = 100


class Rehearse(Protocol):
    """What ``rollout_rehearsal`` returns: rehearse, fail the test on a finding at or above
    ``fail_on``, otherwise return the report."""

    def __call__(
        self,
        *,
        since: str | None = None,
        database: str | None = None,
        applied_from: str | None = None,
        source: str | None = None,
        rows: int | None = None,
        adversarial: bool = False,
        traffic: bool = True,
        fail_on: str = "error",
    ) -> Report: ...


@pytest.fixture
def rollout_rehearsal(request: pytest.FixtureRequest) -> Rehearse:
    """Return ``rehearse(**options) -> Report``, the ``rehearse`` command for a test.

    The options are the command's: ``since``, ``database``, ``applied_from`` (S0) or
    ``source`` (``--from-database``), ``adversarial``, ``traffic`` and ``fail_on``. ``rows``
    defaults to 100 per table; with ``database`` or ``applied_from``, to production's row
    counts scaled so that the largest table gets 100; with ``source``, to the copy's own
    rows. A report at or above ``fail_on`` fails the test with the text report.
    """
    _refuse_test_database(request)
    blocker = _django_db_blocker(request)

    def rehearse(
        *,
        since: str | None = None,
        database: str | None = None,
        applied_from: str | None = None,
        source: str | None = None,
        rows: int | None = None,
        adversarial: bool = False,
        traffic: bool = True,
        fail_on: str = "error",
    ) -> Report:
        from django_rollout.errors import RolloutError
        from django_rollout.findings import Severity

        try:
            threshold = Severity.parse(fail_on)
        except ValueError as exc:
            pytest.fail(f"rollout_rehearsal: fail_on: {exc}", pytrace=False)
        if rows is not None and rows < 0:
            pytest.fail("rollout_rehearsal: rows must be 0 or more", pytrace=False)
        if rows is None and not (source or database or applied_from):
            rows = QUICK_ROWS  # else the copy's own rows, or production's scaled to max_rows
        try:
            with blocker.unblock() if blocker is not None else nullcontext():
                report = _rehearse(
                    since=since,
                    database=database,
                    applied_from=applied_from,
                    fail_on=threshold,
                    rows=rows,
                    max_rows=QUICK_ROWS,
                    traffic=traffic,
                    adversarial=adversarial,
                    source=source,
                )
        except RolloutError as exc:
            pytest.fail(f"django-rollout: error: {exc}", pytrace=False)
        if report.exit_status:
            pytest.fail(_failure(report), pytrace=False)
        return report

    return rehearse


# pytest-django's fixtures that open the test database; each, and the django_db mark,
# goes through _django_db_helper.
_TEST_DATABASE = ("db", "transactional_db", "live_server", "_django_db_helper")


def _refuse_test_database(request: pytest.FixtureRequest) -> None:
    """Refuse a test that also uses the test database: the rehearsal leads ``default`` to
    its scratch database while it runs, which would break the test's transaction and leave
    the test database in use at teardown."""
    used = [name for name in _TEST_DATABASE if name in request.fixturenames]
    if used:
        what = "the django_db mark" if used[0] == "_django_db_helper" else f"{used[0]!r}"
        pytest.fail(
            f"rollout_rehearsal rehearses on a scratch database of its own: drop {what}"
            " from this test (it needs no test database)",
            pytrace=False,
        )


class _Blocker(Protocol):
    def unblock(self) -> AbstractContextManager[Any]: ...


def _django_db_blocker(request: pytest.FixtureRequest) -> _Blocker | None:
    """Return pytest-django's ``django_db_blocker``, or None without pytest-django (or
    without settings, where it gives None too)."""
    try:
        blocker: _Blocker | None = request.getfixturevalue("django_db_blocker")
    except pytest.FixtureLookupError:
        return None
    return blocker


def _rehearse(
    *,
    since: str | None,
    database: str | None,
    applied_from: str | None,
    fail_on: Severity,
    **options: Any,
) -> Report:
    """Start Django if needed (before the API is imported: it imports Django), rehearse."""
    queries, error = _setup_django()
    from django_rollout import api

    check = api.CheckOptions(
        since=since,
        database=database,
        applied_from=applied_from,
        fail_on=fail_on,
        startup_queries=queries,
        startup_error=error,
    )
    return api.rehearse(api.RehearseOptions(check=check, **options))


def _setup_django() -> tuple[Sequence[StartupQuery], str | None]:
    """Start Django unless pytest-django (or the suite) did; return the start-up queries
    captured when this call started it (A601), none otherwise."""
    from django.apps import apps

    if apps.ready:
        return (), None
    from django.conf import settings

    if settings.configured:  # settings.configure() was called, django.setup() was not
        import django

        django.setup()
        return (), None
    from django_rollout.errors import ConfigurationError

    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigurationError(
            "no Django settings: set DJANGO_SETTINGS_MODULE (or use pytest-django)"
        )
    from django_rollout.db.startup import setup_django

    capture = setup_django()
    return capture.queries, capture.error


def _failure(report: Report) -> str:
    """A headline (pytest's summary shows the first line), then the text report."""
    from django_rollout.reporting.text import render_text

    n = report.counts()
    out = io.StringIO()
    out.write(
        f"django-rollout rehearse: verdict {report.extra.get('verdict')}; {n['error']} error(s),"
        f" {n['warning']} warning(s), {n['info']} info (fail on {report.fail_on})\n\n"
    )
    render_text(report, out, color=False)
    return out.getvalue().rstrip("\n")
