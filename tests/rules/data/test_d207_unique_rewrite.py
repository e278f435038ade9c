"""D207: a data migration rewriting the values of a unique column."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.models import F, Value
from django.db.models.functions import Concat, Lower, Trim, Upper
from django.utils.text import slugify

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]


def customer(**options: Any) -> list[Operation]:
    return [
        migrations.CreateModel(
            "Customer",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("email", models.EmailField(max_length=254, unique=True)),
                ("name", models.CharField(max_length=100)),
                ("slug", models.SlugField(max_length=100)),
                ("code", models.CharField(max_length=20)),
                ("region", models.CharField(max_length=20)),
                ("token", models.UUIDField(null=True, unique=True)),
            ],
            options=options,
        )
    ]


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    rows: Mapping[str, int] | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
) -> list[Finding]:
    return judge(operations, before, rows=rows, unit_before=unit_before, rules=DATA)


def run(code: Callable[..., Any]) -> Operation:
    return migrations.RunPython(code, migrations.RunPython.noop)


# -- rewrites of the unique `email` ---------------------------------------------------------


def lower_emails(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(email=Lower("email"))


def lower_emails_filtered(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.exclude(email=Lower("email")).update(email=Lower("email"))


def trim_emails(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.filter(email__startswith=" ").update(email=Trim(F("email")))


def normalise_in_python(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.all().iterator():
        customer.email = customer.email.strip().casefold()
        customer.save(update_fields=["email"])


def normalise_with_bulk_update(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    changed = []
    for customer in Customer.objects.only("email"):
        customer.email = customer.email.lower()
        changed.append(customer)
    Customer.objects.bulk_update(changed, ["email"], batch_size=500)


def one_row(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    admin = Customer.objects.get(pk=1)
    admin.email = admin.email.upper()
    admin.save()


REWRITES_EMAIL = {
    "update_lower": lower_emails,
    "update_lower_filtered": lower_emails_filtered,
    "update_trim_f": trim_emails,
    "loop_strip_casefold_save": normalise_in_python,
    "loop_bulk_update": normalise_with_bulk_update,
    "get_then_save": one_row,
}


@pytest.mark.parametrize("code", REWRITES_EMAIL.values(), ids=REWRITES_EMAIL.keys())
def test_flags_rewrite_of_a_unique_field(code: Callable[..., Any]) -> None:
    [finding] = findings([run(code)], customer())
    assert (finding.rule, finding.severity) == ("D207", Severity.WARNING)
    assert "`shop_customer`.`email`, which is unique" in finding.message
    assert finding.location.line is not None and finding.location.line > 0


# -- unique through constraints and together ------------------------------------------------


def slugify_names(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.all():
        customer.slug = slugify(customer.name)
        customer.save()


def upper_codes(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(code=Upper("code"))


def prefix_codes(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(code=Concat(Value("C-"), "region"))


UNIQUE_BY_OPTIONS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "slug_unique_constraint": (
        slugify_names,
        {"constraints": [models.UniqueConstraint(fields=["slug"], name="c_slug")]},
    ),
    "code_unique_together": (upper_codes, {"unique_together": {("code", "region")}}),
    "code_expression_index": (
        upper_codes,
        {"constraints": [models.UniqueConstraint(Lower("code"), name="c_code_ci")]},
    ),
    "code_partial_constraint": (
        prefix_codes,
        {
            "constraints": [
                models.UniqueConstraint(
                    fields=["code"], condition=models.Q(region="eu"), name="c_code_eu"
                )
            ]
        },
    ),
}


@pytest.mark.parametrize(
    ("code", "options"), UNIQUE_BY_OPTIONS.values(), ids=UNIQUE_BY_OPTIONS.keys()
)
def test_flags_rewrite_of_a_field_under_a_constraint(
    code: Callable[..., Any], options: dict[str, Any]
) -> None:
    assert [f.rule for f in findings([run(code)], customer(**options))] == ["D207"]


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"unique_together": {("code", "region")}}, "part of the unique key (`code`, `region`)"),
        ({"constraints": [models.UniqueConstraint(Lower("code"), name="c")]}, "unique"),
    ],
    ids=["together", "expression"],
)
def test_names_the_key_a_column_is_unique_in(options: dict[str, Any], shown: str) -> None:
    [finding] = findings([run(upper_codes)], customer(**options))
    assert f"`shop_customer`.`code`, which is {shown}:" in finding.message


# -- silent -------------------------------------------------------------------------------


def read_only(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    seen = set()
    for customer in Customer.objects.all():
        seen.add(customer.email.lower())


def assign_without_saving(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.all():
        customer.email = customer.email.lower()
        print(customer.email)


def fresh_tokens(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    for customer in Customer.objects.filter(token__isnull=True):
        customer.token = uuid.uuid4()
        customer.save()


def identity_update(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(email=F("email"))


def constant_update(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.filter(pk=1).update(email="admin@example.com")


def lower_non_unique(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(name=Lower("name"))
    for customer in Customer.objects.all():
        customer.slug = slugify(customer.name)
        customer.save()


def dict_update(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    defaults: dict[str, Any] = {}
    defaults.update(email=Lower("email"))
    Customer.objects.filter(pk__in=[]).delete()


SILENT = {
    "read_only_loop": read_only,
    "assign_without_saving": assign_without_saving,
    "values_not_from_the_row": fresh_tokens,
    "identity_f": identity_update,
    "constant": constant_update,
    "non_unique_columns": lower_non_unique,
    "dict_update_not_a_queryset": dict_update,
}


@pytest.mark.parametrize("code", SILENT.values(), ids=SILENT.keys())
def test_ignores_writes_that_cannot_make_unique_values_collide(code: Callable[..., Any]) -> None:
    assert findings([run(code)], customer()) == []


def test_ignores_reverse_code() -> None:
    op = migrations.RunPython(migrations.RunPython.noop, lower_emails)
    assert findings([op], customer()) == []


def test_judges_uniqueness_as_the_code_now_stands() -> None:
    unit_before = [[migrations.AlterField("customer", "slug", models.SlugField(unique=True))]]
    found = findings([run(slugify_names)], customer(), unit_before=unit_before)
    assert [f.rule for f in found] == ["D207"]


def test_downgrades_to_info_on_a_single_row_table() -> None:
    found = findings([run(lower_emails)], customer(), rows={"shop_customer": 1})
    assert [(f.rule, f.severity) for f in found] == [("D207", Severity.INFO)]


# -- RunSQL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE shop_customer SET email = lower(email)",
        "UPDATE shop_customer SET email = btrim(email) WHERE email <> btrim(email)",
        "UPDATE shop_customer SET email = name",
    ],
    ids=["lower", "trim_where", "copy_other_column"],
)
def test_flags_runsql_rewrite_of_a_unique_column(sql: str) -> None:
    [finding] = findings([migrations.RunSQL(sql)], customer())
    assert (finding.rule, finding.severity) == ("D207", Severity.WARNING)
    assert "`shop_customer`.`email`" in finding.message


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE shop_customer SET name = lower(name)",
        "UPDATE shop_customer SET email = 'x@example.com' WHERE id = 1",
        "UPDATE shop_customer SET email = email",
        "UPDATE other_table SET email = lower(email)",
    ],
    ids=["non_unique", "constant", "identity", "unknown_table"],
)
def test_ignores_runsql_that_cannot_collide(sql: str) -> None:
    assert findings([migrations.RunSQL(sql)], customer()) == []


def test_names_the_key_of_a_runsql_backfill_of_part_of_it() -> None:
    # django-pretix's 0303 shape: a column new to a unique key, backfilled where NULL.
    sql = migrations.RunSQL(
        "UPDATE shop_customer SET region = (SELECT upper(c.code) FROM shop_customer c"
        " WHERE c.id = shop_customer.id) WHERE shop_customer.region IS NULL",
        migrations.RunSQL.noop,
    )
    [finding] = findings([sql], customer(unique_together={("code", "region")}))
    assert "`shop_customer`.`region`, which is part of the unique key (`region`, `code`)" in (
        finding.message
    )
