"""D202: NOT NULL set on an existing column with nothing to fill its NULLs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import pytest
from _sql import django_sql, pg_schema
from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]

NULLABLE: dict[str, Callable[..., models.Field[Any, Any]]] = {
    "char": lambda **kw: models.CharField(max_length=30, **kw),
    "integer": lambda **kw: models.IntegerField(**kw),
    "boolean": lambda **kw: models.BooleanField(**kw),
    "datetime": lambda **kw: models.DateTimeField(**kw),
    "foreign_key": lambda **kw: models.ForeignKey("shop.Category", models.PROTECT, **kw),
    "uuid": lambda **kw: models.UUIDField(**kw),
    "json": lambda **kw: models.JSONField(**kw),
}


def deployed(kind: str, **options: Any) -> list[Operation]:
    return [
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("value", NULLABLE[kind](**{"null": True, **options})),
            ],
        ),
    ]


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    rows: Mapping[str, int] | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
) -> list[Finding]:
    return judge(operations, before, rows=rows, unit_before=unit_before, rules=DATA)


def not_null(kind: str, **options: Any) -> Operation:
    return migrations.AlterField("product", "value", NULLABLE[kind](**options))


@pytest.mark.parametrize("kind", NULLABLE)
def test_flags_not_null_without_default_on_nullable_column_of_s0(kind: str) -> None:
    [finding] = findings([not_null(kind)], deployed(kind))
    assert (finding.rule, finding.severity) == ("D202", Severity.ERROR)
    assert "`shop_product`." in finding.message and "contains null values" in finding.message


def test_flags_blank_char_field_without_default() -> None:
    # blank=True gives '' only to new columns; AlterField does not backfill with it.
    [finding] = findings([not_null("char", blank=True)], deployed("char"))
    assert finding.rule == "D202"


@pytest.mark.parametrize(
    "options",
    [{"default": "x"}, {"db_default": "x"}, {"default": "x", "db_default": "x"}],
    ids=["default", "db_default", "both"],
)
def test_ignores_not_null_with_a_default_django_backfills(options: dict[str, Any]) -> None:
    assert findings([not_null("char", **options)], deployed("char")) == []


def test_flags_explicit_none_default() -> None:
    # default=None makes Django's backfill UPDATE write NULL again.
    [finding] = findings([not_null("integer", default=None)], deployed("integer"))
    assert finding.rule == "D202"


@pytest.mark.parametrize(
    ("options", "fails"),
    [
        ({}, True),
        ({"default": None}, True),
        ({"db_default": None}, True),
        ({"db_default": models.Value(None)}, True),
        ({"default": 0}, False),
        ({"db_default": 0}, False),
    ],
    ids=[
        "none",
        "default_none",
        "db_default_none",
        "db_default_value_none",
        "default",
        "db_default",
    ],
)
def test_postgresql_refuses_exactly_the_not_null_alterations_flagged(
    options: dict[str, Any], fails: bool
) -> None:
    assert bool(findings([not_null("integer", **options)], deployed("integer"))) is fails
    state = ProjectState()
    with pg_schema() as pg:
        for statement in django_sql(deployed("integer"), state):
            pg.execute(statement)
        pg.execute("INSERT INTO shop_product (value) VALUES (NULL), (1)")
        statements = django_sql([not_null("integer", **options)], state)
        try:
            with pg.transaction():
                for statement in statements:
                    pg.execute(statement)
        except psycopg.errors.NotNullViolation:
            assert fails
        else:
            assert not fails


def test_ignores_column_already_not_null_in_s0() -> None:
    before = [
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("value", models.IntegerField()),
            ],
        )
    ]
    unit_before = [[migrations.AlterField("product", "value", models.IntegerField(null=True))]]
    assert findings([not_null("integer")], before, unit_before=unit_before) == []


def test_ignores_column_added_in_the_unit() -> None:
    before = deployed("integer")
    unit_before = [[migrations.AddField("product", "extra", models.IntegerField(null=True))]]
    op = migrations.AlterField("product", "extra", models.IntegerField())
    assert findings([op], before, unit_before=unit_before) == []


def test_ignores_table_created_in_the_unit() -> None:
    assert findings([not_null("integer")], unit_before=[deployed("integer")]) == []


def test_ignores_state_only_not_null() -> None:
    op = migrations.SeparateDatabaseAndState(state_operations=[not_null("integer")])
    assert findings([op], deployed("integer")) == []


def test_follows_a_rename_earlier_in_the_unit() -> None:
    unit_before = [[migrations.RenameField("product", "value", "amount")]]
    op = migrations.AlterField("product", "amount", models.IntegerField())
    [finding] = findings([op], deployed("integer"), unit_before=unit_before)
    assert finding.rule == "D202" and "`amount`" in finding.message


def test_downgrades_to_info_on_an_empty_table() -> None:
    found = findings([not_null("integer")], deployed("integer"), rows={"shop_product": 0})
    assert [(f.rule, f.severity) for f in found] == [("D202", Severity.INFO)]


def park_orphans(apps: Any, schema_editor: Any) -> None:
    Category = apps.get_model("shop", "Category")
    Product = apps.get_model("shop", "Product")
    fallback, _ = Category.objects.get_or_create(pk=1)
    Product.objects.filter(value__isnull=True).update(value=fallback)


def unrelated(apps: Any, schema_editor: Any) -> None:
    Category = apps.get_model("shop", "Category")
    Category.objects.filter(pk=0).delete()


def test_informs_after_a_backfill_in_the_same_migration_when_c107_reports_old_writes() -> None:
    # The old release's field is nullable (C107, error, on the same operation): its writes
    # since the backfill are the only NULLs left, and C107 names that failure.
    ops = [migrations.RunPython(park_orphans, migrations.RunPython.noop), not_null("foreign_key")]
    [finding] = findings(ops, deployed("foreign_key"))
    assert (finding.rule, finding.severity) == ("D202", Severity.INFO)
    assert "after a backfill" in finding.message and "C107" in finding.message


def test_keeps_error_when_the_earlier_data_migration_touches_another_model() -> None:
    ops = [migrations.RunPython(unrelated, migrations.RunPython.noop), not_null("foreign_key")]
    [finding] = findings(ops, deployed("foreign_key"))
    assert finding.severity is Severity.ERROR


def test_informs_after_a_sql_backfill_in_the_same_migration() -> None:
    ops = [
        migrations.RunSQL("UPDATE shop_product SET value = 0 WHERE value IS NULL"),
        not_null("integer"),
    ]
    [finding] = findings(ops, deployed("integer"))
    assert finding.severity is Severity.INFO


def test_flags_runsql_set_not_null_on_nullable_column_of_s0() -> None:
    op = migrations.RunSQL("ALTER TABLE shop_product ALTER COLUMN value SET NOT NULL")
    [finding] = findings([op], deployed("integer"))
    assert (finding.rule, finding.severity) == ("D202", Severity.ERROR)
    assert "`shop_product`.`value`" in finding.message


def test_informs_on_runsql_set_not_null_after_update_in_the_same_statement_list() -> None:
    op = migrations.RunSQL(
        [
            "UPDATE shop_product SET value = 0 WHERE value IS NULL",
            "ALTER TABLE shop_product ALTER COLUMN value SET NOT NULL",
        ]
    )
    [finding] = findings([op], deployed("integer"))
    assert finding.severity is Severity.INFO


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE shop_product ALTER COLUMN id SET NOT NULL",
        "ALTER TABLE other_table ALTER COLUMN value SET NOT NULL",
        "ALTER TABLE shop_product ADD CONSTRAINT v_nn CHECK (value IS NOT NULL) NOT VALID",
        "ALTER TABLE shop_product ALTER COLUMN value DROP NOT NULL",
    ],
    ids=["already_not_null", "unknown_table", "not_valid_check", "drop_not_null"],
)
def test_ignores_runsql_that_cannot_meet_existing_nulls(sql: str) -> None:
    assert [f.rule for f in findings([migrations.RunSQL(sql)], deployed("integer"))] == []


# -- backfills by earlier migrations (unit.history) ----------------------------------------


def backfill_update(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.filter(value__isnull=True).update(value=0)


def backfill_rows(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    for product in Product.objects.filter(value__isnull=True):
        product.value = 0
        product.save()


def backfill_other_column(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.update(id=1)


def seed_products(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.create(value=1)


def _bootstrap(model: Any, value: int) -> None:
    model.objects.filter(value__isnull=True).update(value=value)


def bootstrap_operation(model_string: str) -> migrations.RunPython:
    """An operation class's shape: the model arrives as a string the forward code closes over."""

    def forwards(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(model_string)
        _bootstrap(model, 0)

    return migrations.RunPython(forwards, migrations.RunPython.noop)


@pytest.mark.parametrize(
    "backfill",
    [
        migrations.RunPython(backfill_update, migrations.RunPython.noop),
        migrations.RunPython(backfill_rows, migrations.RunPython.noop),
        migrations.RunSQL("UPDATE shop_product SET value = 0 WHERE value IS NULL"),
        bootstrap_operation("shop.Product"),
    ],
    ids=["update", "save_loop", "sql_update", "closure_model_to_helper"],
)
def test_informs_after_a_backfill_in_a_deployed_migration(backfill: Operation) -> None:
    [finding] = findings([not_null("integer")], [*deployed("integer"), backfill])
    assert (finding.rule, finding.severity) == ("D202", Severity.INFO)
    assert "after a backfill" in finding.message and "C107" in finding.message


def test_informs_after_a_backfill_in_an_earlier_migration_of_the_unit() -> None:
    backfill = migrations.RunPython(backfill_update, migrations.RunPython.noop)
    [finding] = findings([not_null("integer")], deployed("integer"), unit_before=[[backfill]])
    assert (finding.rule, finding.severity) == ("D202", Severity.INFO)


@pytest.mark.parametrize(
    "step",
    [
        migrations.RunPython(backfill_other_column, migrations.RunPython.noop),
        migrations.RunPython(seed_products, migrations.RunPython.noop),
        migrations.RunPython(unrelated, migrations.RunPython.noop),
        migrations.RunSQL("UPDATE shop_product SET id = id"),
        migrations.RunSQL("UPDATE shop_category SET id = id"),
        bootstrap_operation("shop.Category"),
    ],
    ids=[
        "other_column",
        "inserts_only",
        "other_model",
        "sql_other_column",
        "sql_other_table",
        "helper_other_model",
    ],
)
def test_keeps_error_when_no_earlier_data_step_writes_the_column(step: Operation) -> None:
    [finding] = findings([not_null("integer")], [*deployed("integer"), step])
    assert (finding.rule, finding.severity) == ("D202", Severity.ERROR)


def test_warns_after_a_backfill_when_c107_does_not_report_the_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_rollout.rules.data import d202_not_null_over_existing_nulls as d202

    monkeypatch.setattr(d202, "_c107_reports", lambda ctx, table, column: False)
    backfill = migrations.RunPython(backfill_update, migrations.RunPython.noop)
    [finding] = findings([not_null("integer")], [*deployed("integer"), backfill])
    assert (finding.rule, finding.severity) == ("D202", Severity.WARNING)
    assert "release still serving writes in between" in finding.message


def test_c107_fires_on_the_same_operation_as_the_informed_d202() -> None:
    from django_rollout.rules.compat.c107_not_null_on_column_old_release_nulls import (
        NotNullOnColumnOldReleaseNulls,
    )
    from django_rollout.rules.data.d202_not_null_over_existing_nulls import (
        NotNullOverExistingNulls,
    )

    backfill = migrations.RunPython(backfill_update, migrations.RunPython.noop)
    found = judge(
        [not_null("integer")],
        [*deployed("integer"), backfill],
        rules=[NotNullOverExistingNulls, NotNullOnColumnOldReleaseNulls],
    )
    assert sorted((f.rule, f.severity.name, f.operation_index) for f in found) == [
        ("C107", "ERROR", 0),
        ("D202", "INFO", 0),
    ]


# -- a NOT NULL column added to a table of S0 --------------------------------------------------

ADDED_FIRES: dict[str, models.Field[Any, Any]] = {
    "integer": models.IntegerField(),
    "foreign key": models.ForeignKey("shop.Category", models.PROTECT),
    "char without blank": models.CharField(max_length=30),
    "explicit None default": models.IntegerField(default=None),
    "db_default None": models.IntegerField(db_default=None),
    "uuid": models.UUIDField(),
}
ADDED_SILENT: dict[str, models.Field[Any, Any]] = {
    "nullable": models.IntegerField(null=True),
    "default": models.IntegerField(default=0),
    "callable default": models.UUIDField(default=uuid.uuid4),
    "db_default": models.IntegerField(db_default=0),
    "blank char": models.CharField(max_length=30, blank=True),
    "auto_now": models.DateTimeField(auto_now=True),
    "foreign key with default": models.ForeignKey("shop.Category", models.PROTECT, default=1),
    "many to many": models.ManyToManyField("shop.Category", related_name="+"),
}


def added(field: models.Field[Any, Any]) -> Operation:
    return migrations.AddField("product", "added", field.clone())


@pytest.mark.parametrize("label", ADDED_FIRES)
def test_flags_a_not_null_column_added_with_nothing_for_existing_rows(label: str) -> None:
    found = findings([added(ADDED_FIRES[label])], deployed("integer"))
    assert [(f.rule, f.severity) for f in found] == [("D202", Severity.ERROR)]
    assert "is added NOT NULL" in found[0].message and "`null=True`" in found[0].help


@pytest.mark.parametrize("label", ADDED_SILENT)
def test_ignores_an_added_column_django_fills_or_leaves_nullable(label: str) -> None:
    found = findings([added(ADDED_SILENT[label])], deployed("integer"))
    assert [f for f in found if f.rule == "D202"] == []


def test_added_column_is_info_on_an_empty_table() -> None:
    found = findings([added(models.IntegerField())], deployed("integer"), rows={"shop_product": 0})
    assert [(f.rule, f.severity) for f in found] == [("D202", Severity.INFO)]
    assert "(S0 counted 0 rows)" in found[0].message


def test_ignores_a_column_added_to_a_table_created_in_the_unit() -> None:
    assert findings([added(models.IntegerField())], unit_before=[deployed("integer")]) == []


def test_ignores_a_state_only_added_column() -> None:
    op = migrations.SeparateDatabaseAndState(state_operations=[added(models.IntegerField())])
    assert findings([op], deployed("integer")) == []


@pytest.mark.parametrize(("vendor", "fires"), [("sqlite", True), ("mysql", False)])
def test_added_column_on_other_vendors(vendor: str, fires: bool) -> None:
    # SQLite's table rebuild copies NULL into the column; MySQL fills 0 or '' itself.
    version = {"sqlite": (3, 45), "mysql": (8, 0)}[vendor]
    found = judge(
        [added(models.IntegerField())],
        deployed("integer"),
        vendor=vendor,
        server_version=version,
        rules=DATA,
    )
    assert [f.rule for f in found] == (["D202"] if fires else [])


@pytest.mark.parametrize(
    ("field", "fails"),
    [(f, True) for f in ADDED_FIRES.values()] + [(f, False) for f in ADDED_SILENT.values()],
    ids=[f"fires-{k}" for k in ADDED_FIRES] + [f"silent-{k}" for k in ADDED_SILENT],
)
def test_postgresql_refuses_exactly_the_added_columns_flagged(
    field: models.Field[Any, Any], fails: bool
) -> None:
    state = ProjectState()
    with pg_schema() as pg:
        for statement in django_sql(deployed("integer"), state):
            pg.execute(statement)
        pg.execute("INSERT INTO shop_category (id) VALUES (1)")
        pg.execute("INSERT INTO shop_product (value) VALUES (1)")
        statements = django_sql([added(field)], state)
        if not fails:
            with pg.transaction():
                for statement in statements:
                    pg.execute(statement)
            return
        with pytest.raises(psycopg.errors.NotNullViolation) as error, pg.transaction():
            for statement in statements:
                pg.execute(statement)
        column = "added_id" if field.is_relation else "added"
        assert f'column "{column}" of relation "shop_product" contains null values' in str(
            error.value
        )


# -- a NOT NULL column added after a data step empties the table ---------------------------


def delete_every_product(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.all().delete()


def delete_some_products(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    Product.objects.filter(value__isnull=True).delete()


def delete_every_category(apps: Any, schema_editor: Any) -> None:
    apps.get_model("shop", "Category").objects.all().delete()


EMPTIED: dict[str, Operation] = {
    "runpython_all_delete": migrations.RunPython(delete_every_product),
    "runsql_delete": migrations.RunSQL("DELETE FROM shop_product", migrations.RunSQL.noop),
    "runsql_truncate": migrations.RunSQL("TRUNCATE shop_product", migrations.RunSQL.noop),
}
NOT_EMPTIED: dict[str, Operation] = {
    "runpython_filtered_delete": migrations.RunPython(delete_some_products),
    "runpython_other_table": migrations.RunPython(delete_every_category),
    "runsql_delete_where": migrations.RunSQL(
        "DELETE FROM shop_product WHERE value IS NULL", migrations.RunSQL.noop
    ),
}


@pytest.mark.parametrize("step", EMPTIED.values(), ids=EMPTIED.keys())
def test_added_column_is_info_after_an_earlier_step_empties_the_table(step: Operation) -> None:
    # django-pretix's 0031 squash: CachedTicket.objects.all().delete(), then a required FK.
    found = findings([step, added(models.IntegerField())], deployed("integer"))
    [finding] = [f for f in found if f.rule == "D202"]
    assert finding.severity is Severity.INFO
    assert "deletes them all" in finding.message


@pytest.mark.parametrize("step", NOT_EMPTIED.values(), ids=NOT_EMPTIED.keys())
def test_added_column_stays_an_error_when_rows_may_remain(step: Operation) -> None:
    found = findings([step, added(models.IntegerField())], deployed("integer"))
    assert [(f.rule, f.severity) for f in found if f.rule == "D202"] == [("D202", Severity.ERROR)]


def test_added_column_after_a_delete_in_an_earlier_migration_stays_an_error() -> None:
    # Each migration commits: the old release refills the table in between.
    found = findings(
        [added(models.IntegerField())],
        deployed("integer"),
        unit_before=[[EMPTIED["runpython_all_delete"]]],
    )
    assert [(f.rule, f.severity) for f in found] == [("D202", Severity.ERROR)]


def test_postgresql_accepts_the_column_after_the_delete_in_one_transaction() -> None:
    state = ProjectState()
    with pg_schema() as pg:
        for statement in django_sql(deployed("integer"), state):
            pg.execute(statement)
        pg.execute("INSERT INTO shop_product (value) VALUES (1), (NULL)")
        statements = django_sql([EMPTIED["runsql_delete"], added(models.IntegerField())], state)
        with pg.transaction():
            for statement in statements:
                pg.execute(statement)
        assert pg.execute("SELECT count(*) FROM shop_product").fetchone() == (0,)
