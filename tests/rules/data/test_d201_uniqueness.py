"""D201: uniqueness added where existing rows collide, or may."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import pytest
from _sql import django_sql, pg_schema
from django.contrib.postgres.functions import RandomUUID
from django.db import migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models.functions import Lower, Now

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]


def customer(*extra: tuple[str, models.Field[Any, Any]]) -> list[Operation]:
    return [
        migrations.CreateModel(
            "Customer",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("email", models.EmailField(max_length=254)),
                ("nickname", models.CharField(max_length=50, null=True)),
                ("code", models.CharField(max_length=20, unique=True)),
                *extra,
            ],
        )
    ]


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    rows: Mapping[str, int] | None = None,
    unit_before: Sequence[Sequence[Operation]] = (),
) -> list[Finding]:
    return judge(operations, before, rows=rows, unit_before=unit_before, rules=DATA)


def only(found: list[Finding], rule: str) -> list[Finding]:
    assert {f.rule for f in found} <= {rule}, [f.rule for f in found]
    return [f for f in found if f.rule == rule]


CONSTANT_UNIQUE: dict[str, Callable[[], models.Field[Any, Any]]] = {
    "uuid_callable_default": lambda: models.UUIDField(default=uuid.uuid4, unique=True),
    "char_constant_default": lambda: models.CharField(max_length=20, default="x", unique=True),
    "char_blank_no_default": lambda: models.CharField(max_length=20, blank=True, unique=True),
    "text_blank_no_default": lambda: models.TextField(blank=True, unique=True),
    "integer_default": lambda: models.IntegerField(default=0, unique=True),
    "boolean_default": lambda: models.BooleanField(default=False, unique=True),
    "datetime_auto_now_add": lambda: models.DateTimeField(auto_now_add=True, unique=True),
    "constant_db_default": lambda: models.IntegerField(db_default=7, unique=True),
    "stable_db_default_now": lambda: models.DateTimeField(db_default=Now(), unique=True),
    "nullable_with_default": lambda: models.UUIDField(null=True, default=uuid.uuid4, unique=True),
    "char_blank_sqlite_style_default": lambda: models.CharField(
        max_length=64, blank=True, unique=True, db_index=True
    ),
    "json_default": lambda: models.JSONField(default=dict, unique=True),
}


@pytest.mark.parametrize("make", CONSTANT_UNIQUE.values(), ids=CONSTANT_UNIQUE.keys())
def test_flags_unique_column_added_with_one_value_for_every_row(
    make: Callable[[], models.Field[Any, Any]],
) -> None:
    found = only(findings([migrations.AddField("customer", "token", make())], customer()), "D201")
    assert len(found) == 1 and found[0].severity is Severity.ERROR
    assert "every existing row" in found[0].message


def test_flags_one_to_one_added_with_one_default_target_for_every_row() -> None:
    field = models.OneToOneField("shop.Customer", models.CASCADE, default=1, related_name="+")
    found = findings([migrations.AddField("customer", "twin", field)], customer())
    # D203 also fires: that one id may not exist in the target table.
    assert {(f.rule, f.severity) for f in found} == {
        ("D201", Severity.ERROR),
        ("D203", Severity.WARNING),
    }


def test_names_the_callable_default_called_once() -> None:
    field = models.UUIDField(default=uuid.uuid4, unique=True)
    [finding] = findings([migrations.AddField("customer", "token", field)], customer())
    assert "uuid.uuid4" in finding.message and "called once" in finding.message
    assert "`shop_customer`.`token`" in finding.message


SAFE_ADDED: dict[str, Callable[[], models.Field[Any, Any]]] = {
    "nullable_no_default": lambda: models.UUIDField(null=True, unique=True),
    "nullable_char_blank": lambda: models.CharField(
        max_length=20, null=True, blank=True, unique=True
    ),
    "volatile_db_default": lambda: models.UUIDField(db_default=RandomUUID(), unique=True),
    # DEFAULT NULL: every row gets NULL, and NULLs are distinct.
    "nullable_db_default_none": lambda: models.UUIDField(null=True, db_default=None, unique=True),
    "nullable_db_default_value_none": lambda: models.UUIDField(
        null=True, db_default=models.Value(None), unique=True
    ),
    "not_unique_with_default": lambda: models.UUIDField(default=uuid.uuid4),
    "nullable_foreign_key_one_to_one": lambda: models.OneToOneField(
        "shop.Customer", models.CASCADE, null=True, related_name="+"
    ),
}


@pytest.mark.parametrize("make", SAFE_ADDED.values(), ids=SAFE_ADDED.keys())
def test_ignores_added_column_whose_rows_cannot_collide(
    make: Callable[[], models.Field[Any, Any]],
) -> None:
    assert findings([migrations.AddField("customer", "token", make())], customer()) == []


ON_POSTGRESQL = {
    **{name: (make, True) for name, make in CONSTANT_UNIQUE.items()},
    **{name: (make, False) for name, make in SAFE_ADDED.items()},
}


@pytest.mark.parametrize("case", ON_POSTGRESQL.values(), ids=ON_POSTGRESQL.keys())
def test_flags_exactly_the_added_columns_postgresql_refuses_over_two_rows(
    case: tuple[Callable[[], models.Field[Any, Any]], bool],
) -> None:
    make, fails = case
    op = migrations.AddField("customer", "token", make())
    assert bool(findings([op], customer())) is fails
    state = ProjectState()
    with pg_schema() as pg:
        pg.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public")
        pg.execute("SET search_path = " + pg.execute("SHOW search_path").fetchone()[0] + ", public")
        for statement in django_sql(customer(), state):
            pg.execute(statement)
        pg.execute("INSERT INTO shop_customer (email, code) VALUES ('a@x', 'a'), ('b@x', 'b')")
        statements = django_sql([migrations.AddField("customer", "token", make())], state)
        if not fails:
            with pg.transaction():
                for statement in statements:
                    pg.execute(statement)
            return
        with pytest.raises(psycopg.errors.UniqueViolation), pg.transaction():
            for statement in statements:
                pg.execute(statement)


def test_ignores_unique_column_on_table_created_in_the_unit() -> None:
    ops = [
        migrations.AddField("customer", "token", models.UUIDField(default=uuid.uuid4, unique=True))
    ]
    assert findings(ops, unit_before=[customer()]) == []


def test_ignores_state_only_unique_column() -> None:
    field = models.UUIDField(default=uuid.uuid4, unique=True)
    op = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AddField("customer", "token", field)]
    )
    assert findings([op], customer()) == []


@pytest.mark.parametrize("count", [0, 1])
def test_downgrades_to_info_on_a_table_of_at_most_one_row(count: int) -> None:
    field = models.UUIDField(default=uuid.uuid4, unique=True)
    found = findings(
        [migrations.AddField("customer", "token", field)], customer(), rows={"shop_customer": count}
    )
    assert [f.severity for f in found] == [Severity.INFO]
    assert f"S0 counted {count} row" in found[0].message


def test_keeps_error_on_a_table_of_two_rows() -> None:
    field = models.UUIDField(default=uuid.uuid4, unique=True)
    found = findings(
        [migrations.AddField("customer", "token", field)], customer(), rows={"shop_customer": 2}
    )
    assert [f.severity for f in found] == [Severity.ERROR]


def test_flags_unique_constraint_over_a_constant_column_added_just_before() -> None:
    ops = [
        migrations.AddField("customer", "token", models.CharField(max_length=20, default="x")),
        migrations.AddConstraint(
            "customer", models.UniqueConstraint(fields=["token"], name="customer_token_uniq")
        ),
    ]
    [finding] = only(findings(ops, customer()), "D201")
    assert finding.severity is Severity.ERROR and finding.operation_index == 1


def test_informs_when_a_data_step_wrote_the_column_between_add_and_constraint() -> None:
    ops = [
        migrations.AddField("customer", "token", models.CharField(max_length=20, default="x")),
        migrations.RunSQL("UPDATE shop_customer SET token = id::text", migrations.RunSQL.noop),
        migrations.AddConstraint(
            "customer", models.UniqueConstraint(fields=["token"], name="customer_token_uniq")
        ),
    ]
    [finding] = only(findings(ops, customer()), "D201")
    assert finding.severity is Severity.INFO
    assert "earlier data step" in finding.message


def test_warns_when_a_data_step_between_add_and_constraint_writes_another_column() -> None:
    ops = [
        migrations.AddField("customer", "token", models.CharField(max_length=20, default="x")),
        migrations.RunSQL("UPDATE shop_customer SET email = lower(email)", migrations.RunSQL.noop),
        migrations.AddConstraint(
            "customer", models.UniqueConstraint(fields=["token"], name="customer_token_uniq")
        ),
    ]
    [finding] = only(findings(ops, customer()), "D201")
    assert finding.severity is Severity.WARNING


def test_ignores_unique_constraint_over_a_nullable_column_added_just_before() -> None:
    ops = [
        migrations.AddField("customer", "token", models.CharField(max_length=20, null=True)),
        migrations.AddConstraint(
            "customer", models.UniqueConstraint(fields=["token"], name="customer_token_uniq")
        ),
    ]
    assert findings(ops, customer()) == []


def test_flags_nulls_not_distinct_constraint_over_a_nullable_column_added_just_before() -> None:
    ops = [
        migrations.AddField("customer", "token", models.CharField(max_length=20, null=True)),
        migrations.AddConstraint(
            "customer",
            models.UniqueConstraint(
                fields=["token"], name="customer_token_uniq", nulls_distinct=False
            ),
        ),
    ]
    [finding] = only(findings(ops, customer()), "D201")
    assert finding.severity is Severity.ERROR


# -- uniqueness over columns that existed in S0: a warning --------------------------------

EXISTING_UNIQUE: dict[str, Operation] = {
    "alter_field_unique": migrations.AlterField(
        "customer", "email", models.EmailField(max_length=254, unique=True)
    ),
    "alter_field_one_to_one": migrations.AlterField(
        "customer", "nickname", models.CharField(max_length=50, null=True, unique=True)
    ),
    "unique_constraint": migrations.AddConstraint(
        "customer", models.UniqueConstraint(fields=["email"], name="customer_email_uniq")
    ),
    "unique_constraint_expression": migrations.AddConstraint(
        "customer", models.UniqueConstraint(Lower("email"), name="customer_email_ci_uniq")
    ),
    "partial_unique_constraint": migrations.AddConstraint(
        "customer",
        models.UniqueConstraint(
            fields=["email"], condition=models.Q(nickname__isnull=False), name="c_email_uniq"
        ),
    ),
    "unique_together": migrations.AlterUniqueTogether("customer", {("email", "nickname")}),
    "runsql_unique_constraint": migrations.RunSQL(
        "ALTER TABLE shop_customer ADD CONSTRAINT c_email_uniq UNIQUE (email)"
    ),
    "runsql_unique_index": migrations.RunSQL(
        "CREATE UNIQUE INDEX c_email_uniq ON shop_customer (email)"
    ),
    "runsql_unique_index_concurrently": migrations.RunSQL(
        "CREATE UNIQUE INDEX CONCURRENTLY c_email_uniq ON shop_customer (email)"
    ),
    "runsql_expression_index": migrations.RunSQL(
        "CREATE UNIQUE INDEX c_email_uniq ON shop_customer (lower(email))"
    ),
}


@pytest.mark.parametrize("op", EXISTING_UNIQUE.values(), ids=EXISTING_UNIQUE.keys())
def test_warns_when_uniqueness_is_added_over_existing_values(op: Operation) -> None:
    [finding] = only(findings([op], customer()), "D201")
    assert finding.severity is Severity.WARNING
    assert "may" in finding.help or "any duplicate" in finding.message
    assert "`shop_customer`" in finding.message


def recipe_step(concurrently: bool = True, state_unique: bool = True) -> Operation:
    how = "CONCURRENTLY " if concurrently else ""
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                f"CREATE UNIQUE INDEX {how}c_email_uniq ON shop_customer (email)",
                "DROP INDEX CONCURRENTLY c_email_uniq",
            ),
            migrations.RunSQL(
                "ALTER TABLE shop_customer ADD CONSTRAINT c_email_uniq UNIQUE USING INDEX"
                " c_email_uniq"
            ),
        ],
        state_operations=[
            migrations.AlterField(
                "customer", "email", models.EmailField(max_length=254, unique=state_unique)
            )
        ],
    )


def test_ignores_concurrent_unique_index_of_the_documented_recipe() -> None:
    # The recipe's last step: backfilled and checked for duplicates before, built online.
    assert findings([recipe_step()], customer()) == []


@pytest.mark.parametrize(
    "op",
    [recipe_step(concurrently=False), recipe_step(state_unique=False)],
    ids=["not_concurrently", "state_adds_no_uniqueness"],
)
def test_warns_on_unique_index_outside_the_recipe(op: Operation) -> None:
    [finding] = only(findings([op], customer()), "D201")
    assert finding.severity is Severity.WARNING
    assert "CONCURRENTLY" in " ".join(finding.recipe)


SAFE_EXISTING: dict[str, Operation] = {
    "already_unique_field": migrations.AlterField(
        "customer", "code", models.CharField(max_length=40, unique=True)
    ),
    "superset_of_unique": migrations.AddConstraint(
        "customer", models.UniqueConstraint(fields=["code", "email"], name="c_code_email")
    ),
    "unique_together_superset": migrations.AlterUniqueTogether("customer", {("code", "email")}),
    "runsql_superset_of_unique": migrations.RunSQL(
        "CREATE UNIQUE INDEX c_code_email ON shop_customer (code, email)"
    ),
    "non_unique_index": migrations.RunSQL("CREATE INDEX c_email ON shop_customer (email)"),
    "unique_using_existing_index": migrations.RunSQL(
        "ALTER TABLE shop_customer ADD CONSTRAINT c_uniq UNIQUE USING INDEX c_email_idx"
    ),
    "unknown_table": migrations.RunSQL("CREATE UNIQUE INDEX x ON other_table (email)"),
    "plain_index": migrations.AddIndex(
        "customer", models.Index(fields=["email"], name="customer_email_idx")
    ),
}


@pytest.mark.parametrize("op", SAFE_EXISTING.values(), ids=SAFE_EXISTING.keys())
def test_ignores_uniqueness_already_guaranteed_or_not_added(op: Operation) -> None:
    assert findings([op], customer()) == []


def test_follows_a_rename_earlier_in_the_unit() -> None:
    ops = [
        migrations.AlterField("customer", "mail", models.EmailField(max_length=254, unique=True))
    ]
    unit_before = [[migrations.RenameField("customer", "email", "mail")]]
    [finding] = only(findings(ops, customer(), unit_before=unit_before), "D201")
    assert finding.severity is Severity.WARNING


def test_ignores_uniqueness_on_a_table_created_in_the_unit() -> None:
    ops = [
        migrations.AlterField("customer", "email", models.EmailField(max_length=254, unique=True))
    ]
    assert findings(ops, unit_before=[customer()]) == []


def test_downgrades_the_warning_to_info_on_a_single_row_table() -> None:
    op = EXISTING_UNIQUE["alter_field_unique"]
    found = findings([op], customer(), rows={"shop_customer": 1})
    assert [f.severity for f in found] == [Severity.INFO]


def test_warns_on_a_db_default_it_cannot_classify() -> None:
    # A user-defined SQL function may or may not be volatile: "may", not "must".
    field = models.CharField(
        max_length=20, db_default=models.Func(function="shop_next_code"), unique=True
    )
    [finding] = only(
        findings([migrations.AddField("customer", "token", field)], customer()), "D201"
    )
    assert finding.severity is Severity.WARNING


# -- a key column every existing row holds NULL in -------------------------------------------

NULL_FILLED: dict[str, Callable[[], models.Field[Any, Any]]] = {
    "integer": lambda: models.IntegerField(null=True),
    "char": lambda: models.CharField(max_length=20, null=True),
    "uuid": lambda: models.UUIDField(null=True),
    "datetime": lambda: models.DateTimeField(null=True),
    "foreign_key": lambda: models.ForeignKey("shop.customer", models.CASCADE, null=True),
}


@pytest.mark.parametrize("condition", [None, models.Q(nickname="x")], ids=["plain", "partial"])
@pytest.mark.parametrize("kind", NULL_FILLED)
def test_ignores_a_key_with_a_column_added_null_in_the_same_migration(
    kind: str, condition: Any
) -> None:
    ops = [
        migrations.AddField("customer", "base", NULL_FILLED[kind]()),
        migrations.AddConstraint(
            "customer",
            models.UniqueConstraint(fields=("base", "email"), condition=condition, name="u_be"),
        ),
    ]
    assert findings(ops, customer()) == []


def test_ignores_a_key_with_a_column_added_null_in_an_earlier_migration_of_the_unit() -> None:
    earlier = [migrations.AddField("customer", "base", models.IntegerField(null=True))]
    op = migrations.AddConstraint(
        "customer", models.UniqueConstraint(fields=("base", "email"), name="u_be")
    )
    assert findings([op], customer(), unit_before=[earlier]) == []


def test_flags_a_key_whose_null_column_a_data_step_of_the_unit_filled() -> None:
    earlier = [
        migrations.AddField("customer", "base", models.IntegerField(null=True)),
        migrations.RunSQL("UPDATE shop_customer SET base = 1"),
    ]
    op = migrations.AddConstraint(
        "customer", models.UniqueConstraint(fields=("base", "email"), name="u_be")
    )
    assert [f.rule for f in findings([op], customer(), unit_before=[earlier])] == ["D201"]


@pytest.mark.parametrize(
    "field",
    [
        models.IntegerField(default=1),
        models.IntegerField(null=True, default=1),
        models.IntegerField(null=True, db_default=1),
    ],
    ids=["not_null_default", "nullable_default", "nullable_db_default"],
)
def test_flags_a_key_whose_new_column_gets_a_value(field: models.Field[Any, Any]) -> None:
    ops = [
        migrations.AddField("customer", "base", field),
        migrations.AddConstraint(
            "customer", models.UniqueConstraint(fields=("base", "email"), name="u_be")
        ),
    ]
    [finding] = only(findings(ops, customer()), "D201")
    assert finding.severity is Severity.WARNING


def test_flags_a_nulls_not_distinct_key_with_a_column_added_null() -> None:
    ops = [
        migrations.AddField("customer", "base", models.IntegerField(null=True)),
        migrations.AddConstraint(
            "customer",
            models.UniqueConstraint(
                fields=("base", "email"), name="u_be", nulls_distinct=False
            ),
        ),
    ]
    assert [f.rule for f in findings(ops, customer())] == ["D201"]


# -- a uniqueness dropped and re-added unchanged in one migration ----------------------------


def permission(**options: Any) -> list[Operation]:
    return [
        migrations.CreateModel(
            "Perm",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("group", models.IntegerField()),
                ("page", models.IntegerField()),
                ("kind", models.CharField(max_length=20, null=True)),
                ("status", models.CharField(max_length=20)),
            ],
            options=options,
        )
    ]


def test_ignores_unique_together_turned_into_the_same_constraint() -> None:
    ops = [
        migrations.AlterUniqueTogether("perm", set()),
        migrations.AddConstraint(
            "perm", models.UniqueConstraint(fields=("group", "page", "kind"), name="u_gpk")
        ),
    ]
    before = permission(unique_together={("group", "page", "kind")})
    assert findings(ops, before) == []


def test_ignores_a_partial_constraint_re_created_with_the_same_condition() -> None:
    constraint = models.UniqueConstraint(
        fields=("group", "page"), condition=models.Q(status="open"), name="u_open"
    )
    ops = [
        migrations.RemoveConstraint("perm", "u_open"),
        migrations.AddConstraint(
            "perm",
            models.UniqueConstraint(
                fields=("group", "page"), condition=models.Q(status="open"), name="u_open"
            ),
        ),
    ]
    assert findings(ops, permission(constraints=[constraint])) == []


def test_ignores_a_constraint_over_more_columns_than_a_dropped_unique_together() -> None:
    ops = [
        migrations.AlterUniqueTogether("perm", set()),
        migrations.AddConstraint(
            "perm", models.UniqueConstraint(fields=("group", "page", "kind"), name="u_gpk")
        ),
    ]
    assert findings(ops, permission(unique_together={("group", "page")})) == []


def widened(status: models.CharField[Any, Any], *between: Operation) -> list[Finding]:
    """Drop ``u_open`` (status='open'), then re-add it over status IN ('open', 'review')."""
    constraint = models.UniqueConstraint(
        fields=("group", "page"), condition=models.Q(status="open"), name="u_open"
    )
    before = permission(constraints=[constraint])
    before[0].fields[-1] = ("status", status)  # type: ignore[attr-defined]
    ops = [
        migrations.RemoveConstraint("perm", "u_open"),
        *between,
        migrations.AddConstraint(
            "perm",
            models.UniqueConstraint(
                fields=("group", "page"),
                condition=models.Q(status__in=("open", "review")),
                name="u_open",
            ),
        ),
    ]
    return findings(ops, before)


OLD_CHOICES = [("open", "Open"), ("closed", "Closed")]


def test_a_condition_widened_to_a_status_the_old_choices_lack_is_info() -> None:
    [finding] = widened(models.CharField(max_length=20, choices=OLD_CHOICES))
    assert (finding.rule, finding.severity) == ("D201", Severity.INFO)
    assert "widened to `status` values the old release's choices do not offer" in finding.message


def set_review(apps: Any, schema_editor: Any) -> None:
    apps.get_model("shop", "Perm").objects.filter(status="closed").update(status="review")


@pytest.mark.parametrize(
    ("status", "between"),
    [
        # The old release offers "review" already: its rows may hold it.
        (models.CharField(max_length=20, choices=[*OLD_CHOICES, ("review", "Review")]), ()),
        # No choices: any value may be there.
        (models.CharField(max_length=20), ()),
        # A data step of the migration writes the status.
        (
            models.CharField(max_length=20, choices=OLD_CHOICES),
            (migrations.RunPython(set_review, migrations.RunPython.noop),),
        ),
    ],
    # no_choices: a partial key re-created with another condition, nothing known of the rows.
    ids=["old_choice", "no_choices", "data_step_writes_it"],
)
def test_a_widened_condition_stays_a_warning_when_rows_may_hold_the_values(
    status: models.CharField[Any, Any], between: tuple[Operation, ...]
) -> None:
    found = [f for f in widened(status, *between) if f.rule == "D201"]
    assert [f.severity for f in found] == [Severity.WARNING]


def test_flags_a_uniqueness_swap_in_a_non_atomic_migration() -> None:
    ops = [
        migrations.AlterUniqueTogether("perm", set()),
        migrations.AddConstraint(
            "perm", models.UniqueConstraint(fields=("group", "page", "kind"), name="u_gpk")
        ),
    ]
    before = permission(unique_together={("group", "page", "kind")})
    found = judge(ops, before, atomic=False, rules=DATA)
    assert [f.rule for f in found] == ["D201"]


def test_flags_a_uniqueness_dropped_by_an_earlier_migration_of_the_unit() -> None:
    # Between two migrations the old release may write duplicates: only one transaction
    # keeps them out.
    op = migrations.AddConstraint(
        "perm", models.UniqueConstraint(fields=("group", "page", "kind"), name="u_gpk")
    )
    before = permission(unique_together={("group", "page", "kind")})
    found = findings([op], before, unit_before=[[migrations.AlterUniqueTogether("perm", set())]])
    assert [f.rule for f in found] == ["D201"]


# -- values an earlier data step wrote -------------------------------------------------------


def rehash_emails(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    batch = []
    for customer in Customer.objects.all():
        customer.email = customer.email.lower()
        batch.append(customer)
    Customer.objects.bulk_update(batch, ["email"])


def touch_nickname(apps: Any, schema_editor: Any) -> None:
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.update(nickname=None)


def test_informs_when_a_deployed_data_migration_wrote_the_key() -> None:
    op = migrations.AlterField("customer", "email", models.EmailField(max_length=254, unique=True))
    before = [*customer(), migrations.RunPython(rehash_emails, migrations.RunPython.noop)]
    [finding] = only(findings([op], before), "D201")
    assert finding.severity is Severity.INFO
    assert "earlier data step" in finding.message


def test_keeps_the_warning_when_the_earlier_data_migration_wrote_another_column() -> None:
    op = migrations.AlterField("customer", "email", models.EmailField(max_length=254, unique=True))
    before = [*customer(), migrations.RunPython(touch_nickname, migrations.RunPython.noop)]
    [finding] = only(findings([op], before), "D201")
    assert finding.severity is Severity.WARNING


def test_informs_on_sql_unique_index_over_a_column_an_earlier_sql_update_wrote() -> None:
    before = [*customer(), migrations.RunSQL("UPDATE shop_customer SET email = lower(email)")]
    op = migrations.RunSQL("CREATE UNIQUE INDEX c_email ON shop_customer (email)")
    [finding] = only(findings([op], before), "D201")
    assert finding.severity is Severity.INFO


def test_ignores_unique_together_over_columns_added_null_after_an_older_data_step() -> None:
    # The data step of an earlier migration ran before the columns existed: the rows still
    # hold NULL in them when AlterUniqueTogether builds the index.
    earlier = [migrations.RunPython(touch_nickname, migrations.RunPython.noop)]
    ops = [
        migrations.AddField("customer", "key", models.UUIDField(null=True)),
        migrations.AddField(
            "customer", "base", models.ForeignKey("shop.customer", models.PROTECT, null=True)
        ),
        migrations.AlterUniqueTogether("customer", {("key", "base")}),
    ]
    assert findings(ops, customer(), unit_before=[earlier]) == []


def test_flags_unique_together_over_columns_a_data_step_filled_after_adding_them() -> None:
    ops = [
        migrations.AddField("customer", "key", models.UUIDField(null=True)),
        migrations.RunSQL("UPDATE shop_customer SET key = gen_random_uuid()"),
        migrations.AlterUniqueTogether("customer", {("key", "email")}),
    ]
    assert [f.rule for f in findings(ops, customer())] == ["D201"]
