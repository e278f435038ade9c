"""C109: a new foreign key to a table the old release deletes from with its own cascade."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import migrations, models

from django_rollout.findings import Finding, Severity
from django_rollout.graph.context import OperationContext
from django_rollout.graph.model import (
    ModelKey,
    ModelView,
    column_name,
    related_key,
)
from django_rollout.rules.base import Rule
from django_rollout.rules.compat._s0 import is_auto_m2m, join_table, related_target
from django_rollout.rules.data._schema import Fill, existing_fill

# Django 6.1+ on_delete values that the database enforces (ON DELETE ... in the constraint):
# the old release's deletes then cascade in the database, whatever its Collector knows.
_DB_ON_DELETE = ("DB_CASCADE", "DB_SET_NULL", "DB_SET_DEFAULT", "DB_RESTRICT")


@dataclass(frozen=True)
class Reference:
    """A foreign key constraint the operation creates: ``table.column`` -> ``target``."""

    table: str
    column: str
    target: ModelView
    field: str
    # Rows referencing parents exist as soon as the migration commits (existing rows filled
    # by a default, an existing column given a constraint), not only once the new release
    # writes some.
    immediate: bool = False


def enforced_by_database(field: models.Field[Any, Any]) -> bool:
    """Return True when the database, not Django's Collector, handles deletes of parents."""
    on_delete = getattr(field.remote_field, "on_delete", None)
    for name in _DB_ON_DELETE:
        marker = getattr(models, name, None)
        if marker is not None and on_delete is marker:
            return True
    return False


def has_constraint(field: models.Field[Any, Any] | None) -> bool:
    """Return True for a FK or one-to-one field whose column gets a FK constraint."""
    if field is None or not field.is_relation or field.many_to_many:
        return False
    return bool(getattr(field, "db_constraint", True))


class ReferenceUnknownToOldCascade(Rule):
    """New foreign key, one-to-one or many-to-many pointing at a table in S0.

    What it does
    ------------
    Flags every foreign key constraint the deploy unit creates towards a table of S0: a
    ``ForeignKey`` or ``OneToOneField`` added (``AddField``, ``AlterField`` that turns a plain
    column into one, or a new model's ``CreateModel`` — the most common case), and the join
    table of a new many-to-many field, which references both of its models. Silent with
    ``db_constraint=False``, with an ``on_delete`` the database enforces (Django 6.1+
    ``DB_CASCADE``/``DB_SET_NULL``/``DB_SET_DEFAULT``), when the target table is created in the
    same unit, when the old release's model already has the relation (``db_constraint``
    turned on: its Collector knows the children), when a relation moves to a model on the
    same table (an app split in state only: Django emits nothing), and for state-only
    operations. It cannot
    know whether the old release ever deletes rows of the target table: every new model with
    a foreign key to ``auth.User`` is flagged, because deleting a user is exactly the delete
    that breaks. Graded by how soon child rows exist: a warning where rows referencing parent
    rows exist as soon as the migration runs (``AddField`` of a foreign key or one-to-one
    with a non-NULL ``default``/``db_default`` on a table of S0, whose existing rows all get
    it; ``AlterField`` turning an existing column of S0, with its values, into a foreign
    key); info otherwise (a new model's table, a new nullable column without a default, a
    new many-to-many join table), where the child rows appear only when the new release
    writes them.

    Why it breaks production
    ------------------------
    ``on_delete`` lives in Python: Django's ``Collector`` deletes or nulls the children it
    knows of, then deletes the parent. The old release's models do not know the new
    reference, so while it still serves, deleting a parent row that the new release already
    refers to leaves the child row in place, and the deferred constraint rejects the whole
    transaction at commit: ``IntegrityError: update or delete on table "..." violates foreign
    key constraint "..." on table "..."``. Where the migration itself fills the reference
    (a default on existing rows, an existing column), any parent the old release deletes
    can hit it; where only new code writes child rows, the delete fails only for a parent
    the new release referenced while the old release still serves.

    Example
    -------
    ```python
    before = [
        migrations.CreateModel("Category", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ]),
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ]),
    ]
    # Every existing product now references category 1 as soon as the migration commits.
    operations = [
        migrations.AddField(
            "product", "category", models.ForeignKey("shop.category", models.CASCADE, default=1)
        ),
    ]
    ```

    Use instead
    -----------
    ```python
    before = [
        migrations.CreateModel("Category", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ]),
        migrations.CreateModel("Product", [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=100)),
        ]),
    ]
    # No constraint while the old release can delete categories; add it (NOT VALID, then
    # VALIDATE) in the next release.
    operations = [
        migrations.AddField(
            "product",
            "category",
            models.ForeignKey("shop.category", models.CASCADE, default=1, db_constraint=False),
        ),
    ]
    ```
    """

    id = "C109"
    sqlstates = ("23503",)
    name = "reference-unknown-to-old-cascade"
    severity = Severity.WARNING
    message = (
        "`{table}`.`{column}` references `{target_table}`, but the old release's delete"
        " cascade does not know it: its deletes of referenced `{target_table}` rows fail at"
        " commit with `violates foreign key constraint`"
    )
    later_message = (
        "`{table}`.`{column}` references `{target_table}`, but the old release's delete"
        " cascade does not know it: its delete of a `{target_table}` row fails at commit with"
        " `violates foreign key constraint` only if the new release writes `{table}` rows"
        " referencing it while the old release still deletes parents"
    )
    help = (
        "Create `{field}` with `db_constraint=False` in this release; add the constraint in"
        " the next one"
    )
    recipe_steps = (
        "This release: create `{field}` with `db_constraint=False`, so deletes of"
        " `{target_table}` rows by the old release succeed (they leave dangling ids, which the"
        " new code must tolerate until the next release).",
        "Next release (when no server runs the code from before {migration}): clean up"
        " dangling `{table}`.`{column}` values, then add the constraint: `ALTER TABLE"
        ' "{table}" ADD CONSTRAINT ... FOREIGN KEY ("{column}") REFERENCES'
        ' "{target_table}" DEFERRABLE INITIALLY DEFERRED NOT VALID`, then'
        " `VALIDATE CONSTRAINT` (see L302), with `AlterField(db_constraint=True)` state-only.",
    )

    def check_operation(self, ctx: OperationContext) -> Iterable[Finding]:
        if not ctx.database:
            return
        for ref in self._references(ctx):
            yield self.finding(
                ctx,
                severity=self.severity if ref.immediate else Severity.INFO,
                message=None if ref.immediate else self.later_message,
                table=ref.table,
                column=ref.column,
                target_table=ref.target.db_table,
                target_model=ref.target.label,
                field=ref.field,
                # What a rehearsal matches the foreign key violation's constraint with.
                details={"table": ref.table, "column": ref.column},
            )

    def _references(self, ctx: OperationContext) -> Iterator[Reference]:
        op = ctx.operation
        model = ctx.after
        if model is None or not model.has_table:
            return
        if isinstance(op, migrations.CreateModel):
            for name, field in op.fields:
                yield from self._field(ctx, model, name, field, source_in_s0=False)
        elif isinstance(op, migrations.AddField):
            filled = ctx.table_in_s0 and existing_fill(op.field).fill is not Fill.NULL
            yield from self._field(ctx, model, op.name, op.field, ctx.table_in_s0, filled)
        elif isinstance(op, migrations.AlterField):
            if not has_constraint(op.field):
                return
            target = related_target(ctx, op.field)
            old = ctx.before.fields.get(op.name) if ctx.before else None
            if (
                old is not None
                and has_constraint(old)
                and (related_target(ctx, old) == target or ctx.same_target_table(old, op.field))
            ):
                return  # the same constraint, kept (or re-created) by the alteration
            if self._known_to_old_release(ctx, op.name, target):
                return
            existing = ctx.table_in_s0 and ctx.s0_field(op.name) is not None
            yield from self._field(ctx, model, op.name, op.field, False, existing)

    def _known_to_old_release(
        self, ctx: OperationContext, name: str, target: ModelKey | None
    ) -> bool:
        """Return True when the old release's model has field ``name`` as a relation to
        ``target`` (e.g. with ``db_constraint=False``): its Collector handles the children."""
        s0_field = ctx.s0_field(name)
        if target is None or s0_field is None or not s0_field.is_relation:
            return False
        if s0_field.remote_field.model == "self":
            s0_target = ctx.s0_model.key if ctx.s0_model is not None else None
        else:
            s0_target = related_key(s0_field, ctx.app_label)
        return s0_target is not None and ctx.unit.lineage.origin(target) == s0_target

    def _target(self, ctx: OperationContext, key: ModelKey | None) -> ModelView | None:
        """Return the target model if its table is in S0, else None."""
        if key is None or not ctx.unit.in_s0(key):
            return None
        return ctx.unit.model_now(key) or ctx.unit.lineage.s0_model(key)

    def _field(
        self,
        ctx: OperationContext,
        model: ModelView,
        name: str,
        field: models.Field[Any, Any],
        source_in_s0: bool,
        immediate: bool = False,
    ) -> Iterator[Reference]:
        if not field.is_relation or enforced_by_database(field):
            return
        key = related_target(ctx, field)
        if field.many_to_many:
            if not is_auto_m2m(field):
                return  # the through model's own CreateModel creates its foreign keys
            table = join_table(model, name, field)
            target = self._target(ctx, key)
            is_self = key == model.key
            if target is not None and not (is_self and not source_in_s0):
                prefix = "to_" if is_self else ""
                column = f"{prefix}{target.name.lower()}_id"
                yield Reference(table, column, target, name)
            if source_in_s0 and not is_self:
                yield Reference(table, f"{model.name.lower()}_id", model, name)
            return
        if not has_constraint(field):
            return
        target = self._target(ctx, key)
        stored = column_name(name, field)
        if target is None or stored is None:
            return
        yield Reference(model.db_table, stored, target, name, immediate)
