"""The rule contract: one class per module, documented once here.

A rule is a class with ``id``, ``name`` (kebab-case hazard, never the cure), ``severity``,
``message`` (one line, present tense, what production will see, identifiers in backticks) and
``help`` (one imperative line), ``recipe_steps`` (the numbered safe sequence) and a docstring
with the sections ``What it does``, ``Why it breaks production``, ``Example`` and
``Use instead``. The Example and Use instead sections hold a fenced ``python`` block that
defines ``before`` (operations already deployed, optional) and ``operations`` (the migration
judged); a meta-test runs each: the Example must fire, the Use instead must not.

Rules are pure: they read the contexts they are given and return findings. No I/O.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from django_rollout.findings import Finding, Location, Severity
from django_rollout.graph.context import MigrationContext, OperationContext, ProjectContext

SECTIONS = ("What it does", "Why it breaks production", "Example", "Use instead")
RULE_ID = re.compile(r"^[CDLMHA][0-9]{3}$")


class _Keep(dict[str, Any]):
    """Leave unknown placeholders visible instead of failing on them."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, names: Mapping[str, Any]) -> str:
    return template.format_map(_Keep(names))


class Rule:
    """Base class of every rule. Override one or more ``check_*`` hooks."""

    id: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    message: ClassVar[str]
    help: ClassVar[str]
    recipe_steps: ClassVar[tuple[str, ...]] = ()
    # The SQLSTATEs (five characters) or classes (two) of the error production sees when
    # the hazard happens: a rehearsal confirms the finding when it observes one of them on
    # the finding's table. Empty for rules whose hazard is a lock, not an error.
    sqlstates: ClassVar[tuple[str, ...]] = ()

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        """Return findings for one operation of a judged migration."""
        return ()

    def check_migration(self, mctx: MigrationContext) -> Iterable[Finding]:
        """Return findings that need the whole migration (atomicity, lock accumulation)."""
        return ()

    def check_project(self, pctx: ProjectContext) -> Iterable[Finding]:
        """Return findings about the graph or the running application."""
        return ()

    @classmethod
    def observed_as(cls, finding: Finding) -> tuple[str, ...]:
        """The SQLSTATEs that confirm ``finding``: the rule's, unless the finding says that
        production sees this hazard with other errors (C103 with the old name re-added)."""
        return cls.sqlstates

    @classmethod
    def family(cls) -> str:
        return cls.__module__.split(".")[-2]

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    def recipe(self, names: Mapping[str, Any]) -> tuple[str, ...]:
        """Return the safe sequence, step by step, filled in with the user's names."""
        return tuple(f"{i}. {fill(step, names)}" for i, step in enumerate(self.recipe_steps, 1))

    def finding(
        self,
        ctx: OperationContext | None = None,
        *,
        severity: Severity | None = None,
        message: str | None = None,
        help: str | None = None,
        app_label: str | None = None,
        migration: str | None = None,
        location: Location | None = None,
        details: Mapping[str, Any] | None = None,
        **names: Any,
    ) -> Finding:
        """Build a finding, filling ``message``, ``help`` and the recipe with names."""
        filled: dict[str, Any] = ctx.names(**names) if ctx is not None else dict(names)
        if ctx is None:
            # Graph-level findings name their migration directly; messages may use it too.
            filled.setdefault("app_label", app_label or "")
            filled.setdefault("migration", migration or "")
        operation_index = None
        operation = None
        if ctx is not None:
            operation_index = ctx.index
            operation = type(ctx.operation).__name__
            app_label = app_label or ctx.app_label
            migration = migration or ctx.migration_name
        return Finding(
            rule=self.id,
            name=self.name,
            severity=severity or self.severity,
            message=fill(message or self.message, filled),
            help=fill(help or self.help, filled),
            app_label=app_label,
            migration=migration,
            operation_index=operation_index,
            operation=operation,
            location=location or Location(),
            recipe=self.recipe(filled),
            details=tuple(sorted((details or {}).items())),
        )
