"""L305: a data change over a whole table in one transaction, or after DDL."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models
from django.db.models.functions import Lower

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

LOCKS = [r for r in all_rules() if r.family() == "locks"]
BEFORE = [
    migrations.CreateModel(
        "Customer",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.CharField(max_length=200)),
            ("code", models.CharField(max_length=12, null=True)),
        ],
    ),
]


def update_all(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(email=Lower("email"))


def update_filtered_queryset(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    upper = Customer.objects.filter(email__regex="[A-Z]")
    upper.update(email=Lower("email"))


def save_each(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.all():
        customer.email = customer.email.lower()
        customer.save()


def bulk_update_all(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.bulk_update([c for c in Customer.objects.all()], ["email"])


def batched(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    while True:
        batch = list(Customer.objects.filter(code__isnull=True).values_list("pk", flat=True)[:1000])
        if not batch:
            break
        Customer.objects.filter(pk__in=batch).update(code="x")


def one_row(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.filter(pk=1).update(code="admin")


def insert_only(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.bulk_create([Customer(email="a@b.c")])


def new_table_only(apps: Any, schema_editor: Any) -> None:
    Coupon = apps.get_model("shop", "Coupon")
    Coupon.objects.update(code="x")


def read_only(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.count()


def l305(operations: list[Any], **kw: Any) -> list[Finding]:
    return [f for f in judge(operations, BEFORE, rules=LOCKS, **kw) if f.rule == "L305"]


def run(code: Any) -> migrations.RunPython:
    return migrations.RunPython(code, migrations.RunPython.noop)


@pytest.mark.parametrize("code", [update_all, update_filtered_queryset, save_each, bulk_update_all])
@pytest.mark.parametrize("atomic", [True, False])
def test_flags_whole_table_update(code: Any, atomic: bool, django_settings: None) -> None:
    found = l305([run(code)], atomic=atomic)
    assert [f.rule for f in found] == ["L305"]
    assert "`shop_customer`" in found[0].message


def test_flags_batches_that_all_commit_together(django_settings: None) -> None:
    (finding,) = l305([run(batched)], atomic=True)
    assert "commit together" in finding.message


def test_ignores_batches_in_a_non_atomic_migration(django_settings: None) -> None:
    assert l305([run(batched)], atomic=False) == []


@pytest.mark.parametrize("code", [one_row, insert_only, read_only])
def test_ignores_code_that_changes_no_whole_table(code: Any, django_settings: None) -> None:
    assert l305([run(code)]) == []


def test_ignores_tables_created_in_the_unit(django_settings: None) -> None:
    created = [
        migrations.CreateModel(
            "Coupon",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("code", models.CharField(max_length=9)),
            ],
        )
    ]
    assert l305([run(new_table_only)], unit_before=[created]) == []


def test_ignores_noop(django_settings: None) -> None:
    assert l305([migrations.RunPython(migrations.RunPython.noop)]) == []


@pytest.mark.parametrize(
    ("sql", "fires"),
    [
        ('UPDATE "shop_customer" SET "code" = NULL', True),
        ('DELETE FROM "shop_customer"', True),
        ('UPDATE "shop_customer" SET "code" = NULL WHERE "id" = 1', False),
        ('INSERT INTO "shop_customer" ("email") VALUES (\'a\')', False),
    ],
)
def test_judges_runsql_dml(sql: str, fires: bool, django_settings: None) -> None:
    assert bool(l305([migrations.RunSQL(sql)])) is fires


def test_flags_data_pass_after_ddl_in_the_same_transaction(django_settings: None) -> None:
    operations = [
        migrations.AddField("customer", "flag", models.BooleanField(null=True)),
        run(one_row),
    ]
    (finding,) = l305(operations, rows={"shop_customer": 50_000})
    assert "ACCESS EXCLUSIVE on `shop_customer`" in finding.message
    assert finding.severity is Severity.WARNING


def test_ignores_data_pass_after_ddl_when_not_atomic(django_settings: None) -> None:
    operations = [
        migrations.AddField("customer", "flag", models.BooleanField(null=True)),
        run(one_row),
    ]
    assert l305(operations, atomic=False) == []


def test_ignores_ddl_whose_statements_are_deferred(django_settings: None) -> None:
    # AddIndex on a new table created in the unit: nothing on a table in S0 is held.
    created = [
        migrations.CreateModel(
            "Coupon",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("code", models.CharField(max_length=9)),
            ],
        )
    ]
    operations = [
        migrations.AddIndex("coupon", models.Index(fields=["code"], name="c_code")),
        run(one_row),
    ]
    assert l305(operations, unit_before=[created]) == []


@pytest.mark.parametrize(("rows", "severity"), [(100, Severity.INFO), (9_000_000, Severity.ERROR)])
def test_grades_by_row_count(rows: int, severity: Severity, django_settings: None) -> None:
    (finding,) = l305([run(update_all)], rows={"shop_customer": rows})
    assert finding.severity is severity
