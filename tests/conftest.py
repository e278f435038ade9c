"""Shared fixtures. Django settings are per process: configure them once, for every suite.

Suites that need a database add their own aliases at run time; suites that need other apps
run a project in a subprocess (see tests/_project.py).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from django_rollout.testing import ensure_settings

    ensure_settings()


@pytest.fixture
def django_settings() -> None:
    """Kept for tests that name it: settings are configured for the whole session."""
