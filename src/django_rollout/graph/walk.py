"""Walk the plan once, carrying one ProjectState forward, and run the rules on the unit.

Never rebuild the state per migration and never render ``StateApps``: state operations only
touch ``ProjectState.models``, which keeps the default run near the cost of loading the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db import migrations
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models.fields import NOT_PROVIDED

from django_rollout.conf import Config
from django_rollout.findings import Finding
from django_rollout.graph.context import (
    DataStep,
    Lineage,
    MigrationContext,
    MigrationKey,
    OperationContext,
    Unit,
    target_keys,
)
from django_rollout.graph.model import view
from django_rollout.graph.verdicts import Verdicts
from django_rollout.rules.base import Rule


@dataclass(frozen=True)
class WalkSettings:
    config: Config
    vendor: str
    server_version: tuple[int, ...]
    row_counts: Mapping[str, int] | None = None
    real_apps: frozenset[str] = frozenset()
    startup_tables: frozenset[str] | None = frozenset()


class WalkState(ProjectState):
    """The ProjectState a walk carries forward, never rendered.

    Django's ``alter_field`` searches every model for references to the altered field only
    to decide how to re-render models (``reload_model(delay=...)``), which does nothing
    while the state has no ``apps``. On 2,000 migrations that search was a third of the
    walk; this state skips it while unrendered and behaves exactly like Django's otherwise.
    """

    def alter_field(
        self,
        app_label: str,
        model_name: str,
        name: str,
        field: Any,
        preserve_default: bool,
    ) -> None:
        if "apps" in self.__dict__ or self._relations is not None:
            super().alter_field(app_label, model_name, name, field, preserve_default)
            return
        if not preserve_default:
            field = field.clone()
            field.default = NOT_PROVIDED
        self.models[app_label, model_name].fields[name] = field

    def rename_field(self, app_label: str, model_name: str, old_name: str, new_name: str) -> None:
        """Django's rename, its reference search limited to the models it can change.

        Django asks every field of every model whether it points at the renamed field
        (``get_references``), then changes only relations that name it: a ``to_field`` or
        ``to_fields`` equal to the old name. The rest serves re-rendering, which does nothing
        while the state is unrendered. So the search runs over the renamed field's own model
        (its ``from_fields`` are fixed there) and the models holding such a relation.
        """
        if "apps" in self.__dict__ or self._relations is not None:
            super().rename_field(app_label, model_name, old_name, new_name)
            return
        every: dict[tuple[str, str], Any] = vars(self)["models"]
        own = (app_label, model_name)
        # Inlined rather than a helper per field: this loop sees every field of the
        # project for each rename (300,000 on the synthetic benchmark).
        self.models = {
            key: state
            for key, state in every.items()
            if key == own
            or any(
                f.remote_field is not None and _names(f, old_name)
                for f in state.fields.values()
            )
        }
        try:
            super().rename_field(app_label, model_name, old_name, new_name)
        finally:
            self.models = every

    def clone(self) -> WalkState:
        new: WalkState = super().clone()
        new.__class__ = WalkState
        return new


def _names(field: Any, name: str) -> bool:
    """Return True when a relation names ``name`` as the field it points at."""
    remote = field.remote_field
    if not remote:
        return False
    return getattr(remote, "field_name", None) == name or name in (
        getattr(field, "to_fields", None) or ()
    )


def _key(migration: migrations.Migration) -> MigrationKey:
    return (migration.app_label, migration.name)


class Walker:
    """Judge migrations with a set of rules, one ProjectState carried through the plan."""

    def __init__(
        self,
        rules: Sequence[Rule],
        settings: WalkSettings,
        judged: Callable[[MigrationKey], bool] = lambda key: True,
    ) -> None:
        self.rules = rules
        self.settings = settings
        self.judged = judged
        self.state: ProjectState = WalkState(real_apps=set(settings.real_apps))
        self.history: list[DataStep] = []
        self._op_rules = [r for r in rules if _overrides(r, "check_operation")]
        self._migration_rules = [r for r in rules if _overrides(r, "check_migration")]

    def _unit(self, lineage: Lineage) -> Unit:
        s = self.settings
        return Unit(
            state=self.state,
            lineage=lineage,
            config=s.config,
            vendor=s.vendor,
            server_version=s.server_version,
            row_counts=s.row_counts,
            real_apps=s.real_apps,
            history=self.history,
            startup_tables=s.startup_tables,
        )

    def _remember(
        self, migration: migrations.Migration, operation: Operation, deployed: bool
    ) -> None:
        if isinstance(operation, migrations.RunPython | migrations.RunSQL):
            self.history.append(DataStep(migration.app_label, migration.name, operation, deployed))
        elif isinstance(operation, migrations.SeparateDatabaseAndState):
            for inner in operation.database_operations:
                self._remember(migration, inner, deployed)

    def apply(self, migration: migrations.Migration) -> None:
        """Apply a migration's state changes without judging it (it is in S0)."""
        for operation in migration.operations:
            operation.state_forwards(migration.app_label, self.state)
            self._remember(migration, operation, deployed=True)

    def each_on_its_own(
        self,
        plan: Iterable[migrations.Migration],
        verdicts: Verdicts | None = None,
    ) -> list[Finding]:
        """Judge every migration against the state just before it (the default S0).

        Each migration is its own deploy, so once judged it is deployed: its data steps
        join the history as such, whether it was judged or only applied (a report filter
        changes what is shown, not what the next migration sees). ``verdicts`` hands back
        the findings of a migration whose key is unchanged since an earlier run.
        """
        findings: list[Finding] = []
        # Migrations not judged here are applied only when a later one is: a run whose
        # every verdict is kept never builds the state.
        pending: list[migrations.Migration] = []
        for migration in plan:
            key = verdicts.key(migration) if verdicts is not None else None
            judged = self.judged(_key(migration))
            cached = verdicts.get(key) if judged and verdicts is not None else None
            if not judged or cached is not None:
                pending.append(migration)
                findings.extend(cached or ())
                continue
            for earlier in pending:
                self.apply(earlier)
            pending.clear()
            start = len(self.history)
            found = self.judge(migration, self._unit(Lineage(self.state)))
            self.history[start:] = [replace(s, deployed=True) for s in self.history[start:]]
            findings.extend(verdicts.keep(key, found) if verdicts is not None else found)
        return findings

    def as_one_unit(
        self, deployed: Iterable[migrations.Migration], unit: Iterable[migrations.Migration]
    ) -> list[Finding]:
        """Apply the deployed migrations, then judge the unit's net effect on that S0."""
        for migration in deployed:
            self.apply(migration)
        lineage = Lineage(self.state)
        shared = self._unit(lineage)
        findings: list[Finding] = []
        for migration in unit:
            findings.extend(self.judge(migration, shared, report=self.judged(_key(migration))))
        return findings

    def judge(
        self, migration: migrations.Migration, unit: Unit, report: bool = True
    ) -> list[Finding]:
        """Run one migration through the state, collecting contexts and findings."""
        contexts: list[OperationContext] = []
        findings: list[Finding] = []
        for index, operation in enumerate(migration.operations):
            for ctx in self._step(migration, index, operation, unit, (), True, True):
                contexts.append(ctx)
                if report:
                    for rule in self._op_rules:
                        findings.extend(rule.check_operation(ctx))
            self._remember(migration, operation, deployed=False)
        if report:
            mctx = MigrationContext(migration.app_label, migration, contexts, unit)
            for rule in self._migration_rules:
                findings.extend(rule.check_migration(mctx))
        return findings

    def _step(
        self,
        migration: migrations.Migration,
        index: int,
        operation: Operation,
        unit: Unit,
        nesting: tuple[tuple[str, int], ...],
        database: bool,
        state: bool,
    ) -> Iterator[OperationContext]:
        app_label = migration.app_label
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            yield from self._separate(migration, index, operation, unit, nesting)
            return
        before_key, after_key = target_keys(operation, app_label)
        lineage = unit.lineage
        if state:
            for key in (before_key, after_key):
                if key is not None:
                    lineage.touch(key)
        before = view(unit.state, before_key) if before_key else None
        target = before_key or after_key
        s0 = lineage.s0_model(target) if target is not None else None
        names: dict[str, str | None] = {}
        if s0 is not None and before_key is not None:
            for name in (*(before.fields if before else ()), *_field_names(operation)):
                names[name] = lineage.s0_field_name(before_key, name)
        operation.state_forwards(app_label, unit.state)
        after = view(unit.state, after_key) if after_key else None
        if state:
            lineage.record(operation, app_label)
        if s0 is not None and after is not None and after_key is not None:
            for name in after.fields:
                if names.get(name) is None:
                    names[name] = lineage.s0_field_name(after_key, name)
        yield OperationContext(
            app_label=app_label,
            migration=migration,
            index=index,
            operation=operation,
            before=before,
            after=after,
            unit=unit,
            database=database,
            state=state,
            nesting=nesting,
            s0=s0,
            s0_names=names,
        )

    def _separate(
        self,
        migration: migrations.Migration,
        index: int,
        operation: migrations.SeparateDatabaseAndState,
        unit: Unit,
        nesting: tuple[tuple[str, int], ...],
    ) -> Iterator[OperationContext]:
        # The database operations run against their own copy of the state, as Django does;
        # only the state operations change what the code sees.
        if operation.database_operations:
            shadow = replace(unit, state=unit.state.clone())
            for i, inner in enumerate(operation.database_operations):
                here = (*nesting, ("database_operations", i))
                yield from self._step(migration, index, inner, shadow, here, True, False)
        for i, inner in enumerate(operation.state_operations):
            here = (*nesting, ("state_operations", i))
            yield from self._step(migration, index, inner, unit, here, False, True)


def _field_names(operation: Operation) -> tuple[str, ...]:
    """Return the field names an operation names (RenameField names two)."""
    names = [getattr(operation, attr, None) for attr in ("name", "old_name", "new_name")]
    if getattr(operation, "model_name", None) is None:
        return ()  # a model operation: "name" is the model's
    return tuple(n for n in names if isinstance(n, str))


def _overrides(rule: Rule, hook: str) -> bool:
    return getattr(type(rule), hook) is not getattr(Rule, hook)
