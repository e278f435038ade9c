"""Shared fixtures. Settings are configured lazily: some suites configure their own."""

from __future__ import annotations

import pytest


@pytest.fixture
def django_settings() -> None:
    """Minimal Django settings for tests that judge in-memory migrations."""
    from django_rollout.testing import ensure_settings

    ensure_settings()
