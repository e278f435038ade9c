"""django-rollout: ship Django schema migrations safely to a live database."""

from __future__ import annotations

__version__ = "0.1.0"
