"""Discover rules: every ``Rule`` subclass in a module below ``django_rollout.rules``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from django_rollout.rules.base import Rule


@cache
def all_rules() -> tuple[type[Rule], ...]:
    """Return every rule class, sorted by id; a rule registers by existing."""
    import django_rollout.rules as package

    found: dict[str, type[Rule]] = {}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Rule)
                and obj is not Rule
                and obj.__module__ == module.__name__
                and getattr(obj, "id", None)
            ):
                if obj.id in found and found[obj.id] is not obj:
                    raise RuntimeError(f"rule id {obj.id} is defined twice")
                found[obj.id] = obj
    return tuple(found[k] for k in sorted(found))


def rule_by_id(rule_id: str) -> type[Rule] | None:
    for rule in all_rules():
        if rule.id == rule_id.upper():
            return rule
    return None
