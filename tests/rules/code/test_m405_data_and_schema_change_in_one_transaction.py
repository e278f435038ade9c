from __future__ import annotations

from typing import Any

import psycopg
import pytest
from _sql import django_sql
from _sql import pg_schema as schema_on_postgresql
from django.db import migrations, models
from django.db.migrations.state import ProjectState

from django_rollout.rules.code.m405_data_and_schema_change_in_one_transaction import (
    DataAndSchemaChangeInOneTransaction,
)
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

CODE_RULES = [r for r in all_rules() if r.family() == "code"]
M405 = [DataAndSchemaChangeInOneTransaction]
NOOP_PY = migrations.RunPython.noop
NOOP_SQL = migrations.RunSQL.noop


def order_model() -> migrations.CreateModel:
    return migrations.CreateModel(
        "Order",
        [("id", models.BigAutoField(primary_key=True)), ("code", models.CharField(max_length=20))],
    )


def line_model(**fk: Any) -> migrations.CreateModel:
    return migrations.CreateModel(
        "OrderLine",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("order", models.ForeignKey("shop.Order", models.CASCADE, null=True, **fk)),
            ("quantity", models.IntegerField(default=1)),
        ],
    )


BEFORE = [order_model(), line_model()]


# -- data steps ------------------------------------------------------------------------------


def create_lines(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    OrderLine = apps.get_model("shop", "OrderLine")
    for order in Order.objects.all():
        OrderLine.objects.create(order=order, quantity=1)


def bulk_create_lines(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop.OrderLine")
    OrderLine.objects.bulk_create([OrderLine(quantity=1) for _ in range(3)])


def save_new_line(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model(app_label="shop", model_name="OrderLine")
    line = OrderLine(quantity=2)
    line.save()


def get_or_create_line(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    line, _created = OrderLine.objects.get_or_create(quantity=0)


def repoint_lines(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    OrderLine.objects.filter(quantity=0).update(order=None)


def repoint_lines_by_save(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    for line in OrderLine.objects.filter(quantity=0):
        line.order_id = None
        line.save()


def delete_orders(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    Order.objects.filter(code="").delete()


def delete_orders_one_by_one(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    for order in Order.objects.filter(code=""):
        order.delete()


def touch_quantities(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    OrderLine.objects.filter(quantity=0).update(quantity=1)


def save_quantities(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    for line in OrderLine.objects.all():
        line.quantity += 1
        line.save()


def bulk_update_quantities(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    lines = list(OrderLine.objects.all())
    OrderLine.objects.bulk_update(lines, ["quantity"])


def delete_lines(apps: Any, schema_editor: Any) -> None:
    OrderLine = apps.get_model("shop", "OrderLine")
    OrderLine.objects.filter(quantity=0).delete()


def create_orders(apps: Any, schema_editor: Any) -> None:
    Order = apps.get_model("shop", "Order")
    Order.objects.create(code="x")


def run(func: Any) -> migrations.RunPython:
    return migrations.RunPython(func, NOOP_PY)


def add_note(model: str) -> migrations.AddField:
    return migrations.AddField(model, "note", models.TextField(null=True))


FLAGGED = {
    "create-then-addfield": ([run(create_lines), add_note("orderline")], "inserts rows into"),
    "bulk-create-then-alterfield": (
        [
            run(bulk_create_lines),
            migrations.AlterField("orderline", "quantity", models.BigIntegerField()),
        ],
        "inserts rows into",
    ),
    "save-new-then-addindex": (
        [
            run(save_new_line),
            migrations.AddIndex("orderline", models.Index(fields=["quantity"], name="q_idx")),
        ],
        "inserts rows into",
    ),
    "get-or-create-then-constraint": (
        [
            run(get_or_create_line),
            migrations.AddConstraint(
                "orderline", models.CheckConstraint(condition=models.Q(quantity__gte=0), name="q")
            ),
        ],
        "inserts rows into",
    ),
    "update-fk-then-removefield": (
        [run(repoint_lines), migrations.RemoveField("orderline", "quantity")],
        "re-points rows of",
    ),
    "save-fk-then-addfield": ([run(repoint_lines_by_save), add_note("orderline")], "re-points"),
    "delete-parent-then-addfield": ([run(delete_orders), add_note("order")], "deletes rows from"),
    "delete-parent-instances-then-addfield": (
        [run(delete_orders_one_by_one), add_note("order")],
        "deletes rows from",
    ),
    "sql-insert-then-addfield": (
        [
            migrations.RunSQL("INSERT INTO shop_orderline (quantity) VALUES (1)", NOOP_SQL),
            add_note("orderline"),
        ],
        "inserts rows into",
    ),
    "sql-delete-then-sql-alter": (
        [
            migrations.RunSQL("DELETE FROM shop_order WHERE code = ''", NOOP_SQL),
            migrations.RunSQL("ALTER TABLE shop_order ADD COLUMN note text", NOOP_SQL),
        ],
        "deletes rows from",
    ),
    "sql-update-fk-then-deletemodel": (
        [
            migrations.RunSQL("UPDATE shop_orderline SET order_id = NULL", NOOP_SQL),
            migrations.DeleteModel("orderline"),
        ],
        "re-points rows of",
    ),
    "insert-then-alter-inside-separate": (
        [
            run(create_lines),
            migrations.SeparateDatabaseAndState(
                database_operations=[
                    migrations.RunSQL("CREATE INDEX ol_q ON shop_orderline (quantity)", NOOP_SQL)
                ]
            ),
        ],
        "inserts rows into",
    ),
}


@pytest.mark.parametrize(("operations", "verb"), FLAGGED.values(), ids=FLAGGED.keys())
def test_flags_write_then_alter_of_same_table(operations: Any, verb: str) -> None:
    findings = judge(operations, BEFORE, rules=CODE_RULES)
    assert {f.rule for f in findings} == {"M405"}
    [finding] = findings
    assert finding.operation_index == len(operations) - 1
    assert verb in finding.message
    assert "pending trigger events" in finding.message
    assert "#0" in finding.message


def test_flags_tables_created_earlier_in_the_unit() -> None:
    # The constraint exists once the earlier migration has committed.
    findings = judge(
        [run(create_lines), add_note("orderline")], [], unit_before=[BEFORE], rules=M405
    )
    assert [f.rule for f in findings] == ["M405"]


def test_reports_only_the_first_alteration() -> None:
    ops = [
        run(create_lines),
        add_note("orderline"),
        migrations.RemoveField("orderline", "quantity"),
    ]
    findings = judge(ops, BEFORE, rules=M405)
    assert [f.operation_index for f in findings] == [1]


def test_flags_self_referencing_foreign_key_on_delete() -> None:
    before = [
        migrations.CreateModel(
            "Order",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("code", models.CharField(max_length=20)),
                ("parent", models.ForeignKey("self", models.CASCADE, null=True)),
            ],
        )
    ]
    findings = judge([run(delete_orders), add_note("order")], before, rules=M405)
    assert [f.rule for f in findings] == ["M405"]


SILENT = {
    "alter-before-data-step": [add_note("orderline"), run(create_lines)],
    "insert-child-alter-parent": [run(create_lines), add_note("order")],
    "insert-parent-alter-parent": [run(create_orders), add_note("order")],
    "update-non-fk-columns": [run(touch_quantities), add_note("orderline")],
    "save-non-fk-columns": [run(save_quantities), add_note("orderline")],
    "bulk-update-non-fk-columns": [run(bulk_update_quantities), add_note("orderline")],
    "delete-unreferenced-child": [run(delete_lines), add_note("orderline")],
    "rename-field-after-insert": [
        run(create_lines),
        migrations.RenameField("orderline", "quantity", "qty"),
    ],
    "rename-model-after-insert": [run(create_lines), migrations.RenameModel("OrderLine", "Line")],
    "alterfield-without-sql": [
        run(create_lines),
        migrations.AlterField(
            "orderline", "quantity", models.IntegerField(default=1, help_text="how many")
        ),
    ],
    "set-constraints-immediate-between": [
        run(create_lines),
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", NOOP_SQL),
        add_note("orderline"),
    ],
    "state-only-addfield": [
        run(create_lines),
        migrations.SeparateDatabaseAndState(state_operations=[add_note("orderline")]),
    ],
    "sql-insert-into-other-table": [
        migrations.RunSQL("INSERT INTO shop_order (code) VALUES ('x')", NOOP_SQL),
        add_note("order"),
    ],
    "sql-select-only": [
        migrations.RunSQL("SELECT count(*) FROM shop_orderline", NOOP_SQL),
        add_note("orderline"),
    ],
}


@pytest.mark.parametrize("operations", SILENT.values(), ids=SILENT.keys())
def test_ignores_steps_that_leave_no_pending_event_on_the_altered_table(operations: Any) -> None:
    assert judge(operations, BEFORE, rules=CODE_RULES) == []


def test_ignores_non_atomic_migration() -> None:
    ops = [run(create_lines), add_note("orderline")]
    findings = judge(ops, BEFORE, atomic=False, rules=CODE_RULES)
    assert {f.rule for f in findings} == {"M407"}


def test_ignores_foreign_key_without_constraint() -> None:
    before = [order_model(), line_model(db_constraint=False)]
    assert judge([run(create_lines), add_note("orderline")], before, rules=M405) == []


def test_ignores_foreign_key_created_in_the_same_migration() -> None:
    # Django adds a CreateModel's foreign key constraints at the end of the migration.
    ops = [line_model(), run(create_lines), add_note("orderline")]
    assert judge(ops, [order_model()], rules=M405) == []


def test_ignores_other_vendors() -> None:
    ops = [run(create_lines), add_note("orderline")]
    assert judge(ops, BEFORE, vendor="sqlite", server_version=(3, 45), rules=M405) == []


# -- the premise, on a real server ----------------------------------------------------------


@pytest.fixture
def pg_schema() -> Any:
    with schema_on_postgresql() as conn:
        yield conn


@pytest.fixture
def pg(pg_schema: Any) -> Any:
    conn = pg_schema
    conn.execute("CREATE TABLE shop_order (id bigint PRIMARY KEY, code text)")
    conn.execute(
        "CREATE TABLE shop_orderline (id bigint PRIMARY KEY, quantity int,"
        " order_id bigint REFERENCES shop_order (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.execute("INSERT INTO shop_order VALUES (1, 'a'), (2, '')")
    conn.execute("INSERT INTO shop_orderline VALUES (1, 1, 1)")
    return conn


def _in_one_transaction(conn: Any, *statements: str) -> None:
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)


@pytest.mark.parametrize(
    ("write", "alter", "table"),
    [
        (
            "INSERT INTO shop_orderline VALUES (2, 1, 1)",
            "ALTER TABLE shop_orderline ADD note text",
            "shop_orderline",
        ),
        (
            "UPDATE shop_orderline SET order_id = 2",
            "ALTER TABLE shop_orderline ADD note text",
            "shop_orderline",
        ),
        (
            "DELETE FROM shop_order WHERE id = 2",
            "ALTER TABLE shop_order ADD note text",
            "shop_order",
        ),
    ],
    ids=["insert-child", "repoint-child", "delete-parent"],
)
def test_postgresql_refuses_alter_after_write_in_one_transaction(
    pg: Any, write: str, alter: str, table: str
) -> None:
    with pytest.raises(psycopg.errors.ObjectInUse) as error:
        _in_one_transaction(pg, write, alter)
    assert str(error.value) == f'cannot ALTER TABLE "{table}" because it has pending trigger events'


@pytest.mark.parametrize(
    "statements",
    [
        ("ALTER TABLE shop_orderline ADD note text", "INSERT INTO shop_orderline VALUES (2, 1, 1)"),
        ("UPDATE shop_orderline SET quantity = 5", "ALTER TABLE shop_orderline ADD note text"),
        ("INSERT INTO shop_orderline VALUES (2, 1, 1)", "ALTER TABLE shop_order ADD note text"),
        ("INSERT INTO shop_order VALUES (3, 'c')", "ALTER TABLE shop_order ADD note text"),
        ("DELETE FROM shop_orderline", "ALTER TABLE shop_orderline ADD note text"),
        (
            "INSERT INTO shop_orderline VALUES (2, 1, 1)",
            "ALTER TABLE shop_orderline RENAME quantity TO qty",
        ),
        (
            "INSERT INTO shop_orderline VALUES (2, 1, 1)",
            "SET CONSTRAINTS ALL IMMEDIATE",
            "ALTER TABLE shop_orderline ADD note text",
        ),
    ],
    ids=[
        "alter-first",
        "update-non-fk",
        "alter-other-table",
        "insert-parent",
        "delete-child",
        "rename-column",
        "set-constraints-immediate",
    ],
)
def test_postgresql_accepts_what_the_rule_leaves_silent(
    pg: Any, statements: tuple[str, ...]
) -> None:
    _in_one_transaction(pg, *statements)


# -- AlterField: flagged exactly when PostgreSQL refuses Django's own SQL for it -------------


# The order line with a second foreign key, which an insert also leaves pending.
TWO_FKS = [
    *BEFORE,
    migrations.AddField(
        "orderline",
        "replaces",
        models.ForeignKey("shop.Order", models.SET_NULL, null=True, related_name="+"),
    ),
]
RENAMED_FK = models.ForeignKey("shop.Order", models.CASCADE, null=True, db_column="order_ref")


def _alter(name: str, field: Any) -> migrations.AlterField:
    return migrations.AlterField("orderline", name, field)


AFTER_A_WRITE = {
    # A new column name alone is a RENAME, which PostgreSQL does not check.
    "rename-column": (
        _alter("quantity", models.IntegerField(default=1, db_column="qty")),
        BEFORE,
        False,
    ),
    "rename-and-retype": (
        _alter("quantity", models.BigIntegerField(default=1, db_column="qty")),
        BEFORE,
        True,
    ),
    # Django sends a comment with an ALTER COLUMN ... TYPE of the same type.
    "comment": (_alter("quantity", models.IntegerField(default=1, db_comment="n")), BEFORE, True),
    # Django drops the constraint with SET CONSTRAINTS ... IMMEDIATE first: nothing of it
    # stays pending, but the other foreign key's checks do.
    "rename-fk-column": (_alter("order", RENAMED_FK), BEFORE, False),
    "rename-fk-column-another-fk-pending": (_alter("order", RENAMED_FK), TWO_FKS, True),
    "remove-fk": (migrations.RemoveField("orderline", "order"), BEFORE, False),
    "remove-fk-another-fk-pending": (migrations.RemoveField("orderline", "order"), TWO_FKS, True),
    "remove-column": (migrations.RemoveField("orderline", "quantity"), BEFORE, True),
}


@pytest.mark.parametrize(("alter", "before", "refused"), AFTER_A_WRITE.values(), ids=AFTER_A_WRITE)
def test_an_operation_after_a_write_is_flagged_exactly_when_postgresql_refuses_it(
    pg_schema: Any, alter: Any, before: list[Any], refused: bool
) -> None:
    flagged = judge([run(create_lines), alter], before, rules=M405)
    assert [f.rule for f in flagged] == (["M405"] if refused else [])

    state = ProjectState()
    for statement in django_sql(before, state):
        pg_schema.execute(statement)
    pg_schema.execute("INSERT INTO shop_order (code) VALUES ('a')")
    write = "INSERT INTO shop_orderline (order_id, quantity) SELECT id, 1 FROM shop_order"
    alter_sql = django_sql([alter], state)
    if refused:
        with pytest.raises(psycopg.errors.ObjectInUse):
            _in_one_transaction(pg_schema, write, *alter_sql)
    else:
        _in_one_transaction(pg_schema, write, *alter_sql)
