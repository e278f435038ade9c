"""L305: a data change over a whole table in one transaction, or after DDL."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import migrations, models
from django.db.models import F
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


def update_via_all(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.all().update(code=None)


def delete_all(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    customers = Customer.objects.filter()  # no lookup: every row
    customers.delete()


def filtered_update_per_row(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.all():
        Customer.objects.filter(email=customer.email.upper()).update(code=customer.code)


def filtered_update_until_done(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    while Customer.objects.filter(code__isnull=True).exists():
        Customer.objects.filter(code__isnull=True, email__startswith="a").update(code="a")


def exclude_update(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.exclude(code__isnull=True).update(code=Lower("code"))


def q_filter_delete(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.filter(models.Q(code="") | models.Q(email="")).delete()


def get_then_delete(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    welcome = Customer.objects.get(email="welcome@example.com")
    welcome.delete()


def save_each_filtered(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.filter(code__isnull=True):
        customer.code = customer.email[:12]
        customer.save()


def rename_values(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for old, new in [("edit", "change"), ("remove", "delete")]:
        Customer.objects.filter(code=old).update(code=new)


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


def delete_duplicates_but_first(apps: Any, schema_editor: Any) -> None:
    # django-axes' 0007: the duplicated groups, then every row of each group but its first.
    Customer = apps.get_model("shop", "Customer")
    duplicated = Customer.objects.values("email").annotate(n=models.Count("id")).filter(n__gt=1)
    for group in duplicated:
        redundant = Customer.objects.filter(email=group["email"])[1:]
        for customer in redundant:
            customer.delete()


def delete_all_but_first(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.order_by("pk")[1:]:
        customer.delete()


def save_in_pages(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for start in range(0, Customer.objects.count(), 500):
        for customer in Customer.objects.order_by("pk")[start : start + 500]:
            customer.code = customer.email[:12]
            customer.save()


def l305(operations: list[Any], **kw: Any) -> list[Finding]:
    return [f for f in judge(operations, BEFORE, rules=LOCKS, **kw) if f.rule == "L305"]


def run(code: Any) -> migrations.RunPython:
    return migrations.RunPython(code, migrations.RunPython.noop)


@pytest.mark.parametrize(
    "code",
    [update_all, update_via_all, delete_all, save_each, bulk_update_all, delete_all_but_first],
)
@pytest.mark.parametrize("atomic", [True, False])
def test_flags_whole_table_update(code: Any, atomic: bool, django_settings: None) -> None:
    found = l305([run(code)], atomic=atomic)
    assert [f.rule for f in found] == ["L305"]
    assert "`shop_customer`" in found[0].message


@pytest.mark.parametrize("code", [batched, save_in_pages])
def test_flags_batches_that_all_commit_together(code: Any, django_settings: None) -> None:
    (finding,) = l305([run(code)], atomic=True)
    assert "commit together" in finding.message


@pytest.mark.parametrize("code", [filtered_update_per_row, filtered_update_until_done])
def test_flags_filtered_writes_in_a_loop_that_walks_the_table(
    code: Any, django_settings: None
) -> None:
    (finding,) = l305([run(code)], atomic=True)
    assert "commit together" in finding.message


@pytest.mark.parametrize("code", [batched, filtered_update_per_row, filtered_update_until_done])
def test_ignores_batches_in_a_non_atomic_migration(code: Any, django_settings: None) -> None:
    assert l305([run(code)], atomic=False) == []


@pytest.mark.parametrize(
    "code",
    [
        q_filter_delete,
        get_then_delete,
        save_each_filtered,
        rename_values,
        # A slice with no end is the rest of what the filter matched, not a page of a table.
        delete_duplicates_but_first,
    ],
)
@pytest.mark.parametrize("atomic", [True, False])
def test_ignores_filtered_writes(code: Any, atomic: bool, django_settings: None) -> None:
    """A lookup narrows a write to the rows that match, as a WHERE does in RunSQL."""
    assert [f.rule for f in judge([run(code)], BEFORE, rules=LOCKS, atomic=atomic)] == []


def backfill_new_column(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.filter(code="").update(code=F("email"))


def backfill_nulls(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    pending = Customer.objects.filter(code__isnull=True)
    pending.update(code="n/a")


@pytest.mark.parametrize(
    "code", [backfill_new_column, backfill_nulls, update_filtered_queryset, exclude_update]
)
def test_flags_backfill_whose_filter_selects_every_unconverted_row(
    code: Any, django_settings: None
) -> None:
    """A filter on the very column being rewritten (unfilled rows, or rows not normalised
    yet) reaches every row of the table on its first run."""
    assert [f.rule for f in judge([run(code)], BEFORE, rules=LOCKS)] == ["L305"]


def test_flags_filtered_write_after_ddl(django_settings: None) -> None:
    operations = [
        migrations.AddField("customer", "flag", models.BooleanField(null=True)),
        run(update_filtered_queryset),
    ]
    (finding,) = l305(operations)
    assert "ACCESS EXCLUSIVE on `shop_customer`" in finding.message


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
