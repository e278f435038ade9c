"""Per-vendor fact tables: what each kind of statement locks, rewrites and scans.

Rules ask :func:`facts_for` instead of branching on the vendor.
"""

from __future__ import annotations

from django_rollout.vendors.base import (
    DbType,
    LockFact,
    LockMode,
    StatementKind,
    UnsupportedStatementError,
    VendorFacts,
)
from django_rollout.vendors.postgresql import PostgreSQLFacts
from django_rollout.vendors.sqlite import SQLiteFacts

__all__ = [
    "DbType",
    "LockFact",
    "LockMode",
    "StatementKind",
    "UnsupportedStatementError",
    "VendorFacts",
    "facts_for",
]

_FACTS: dict[str, VendorFacts] = {
    "postgresql": PostgreSQLFacts(),
    "sqlite": SQLiteFacts(),
}


def facts_for(vendor: str) -> VendorFacts:
    """Return the fact table for *vendor*, as Django's ``connection.vendor`` names it."""
    try:
        return _FACTS[vendor]
    except KeyError:
        known = ", ".join(sorted(_FACTS))
        raise ValueError(f"no lock facts for database vendor {vendor!r} (known: {known})") from None
