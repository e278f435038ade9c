"""D205: a data migration inserting rows that another writer may already have written."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.db import IntegrityError, migrations, models, transaction
from django.db.migrations.operations.base import Operation

from django_rollout.findings import Finding, Severity
from django_rollout.rules.registry import all_rules
from django_rollout.testing import judge

pytestmark = pytest.mark.usefixtures("django_settings")

DATA = [r for r in all_rules() if r.family() == "data"]


def config_model() -> Operation:
    return migrations.CreateModel(
        "Config",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=100, unique=True)),
            ("value", models.TextField()),
        ],
    )


def setting_model() -> Operation:
    return migrations.CreateModel(
        "Setting",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("key", models.CharField(max_length=100, unique=True)),
            ("value", models.JSONField(null=True)),
        ],
    )


def group_model() -> Operation:
    return migrations.CreateModel(
        "Group",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=150, unique=True)),
        ],
    )


def findings(
    operations: Sequence[Operation],
    before: Sequence[Operation] = (),
    *,
    atomic: bool = True,
    unit_before: Sequence[Sequence[Operation]] = (),
    other_apps: dict[str, Sequence[Operation]] | None = None,
    startup_tables: frozenset[str] | None = frozenset(),
) -> list[Finding]:
    return judge(
        operations,
        before,
        atomic=atomic,
        unit_before=unit_before,
        other_apps=other_apps,
        rules=DATA,
        startup_tables=startup_tables,
    )


def run(code: Callable[..., Any]) -> Operation:
    return migrations.RunPython(code, migrations.RunPython.noop)


# -- forward functions that insert plainly -----------------------------------------------


def create_group(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group.objects.create(name="editors")


def create_through_using(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    db_alias = schema_editor.connection.alias
    Group.objects.using(db_alias).bulk_create([Group(name="editors"), Group(name="viewers")])


def copy_config(apps: Any, schema_editor: Any) -> None:
    Config = apps.get_model("shop", "Config")
    Setting = apps.get_model("shop.Setting")
    Setting.objects.bulk_create(
        [Setting(key=c.key, value=json.loads(c.value)) for c in Config.objects.all()]
    )


def build_and_save(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    for name in ("editors", "viewers"):
        group = Group(name=name)
        group.save()


def construct_and_save_inline(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group(name="editors").save()


def inline_get_model(apps: Any, schema_editor: Any) -> None:
    apps.get_model("shop", "Group").objects.create(name="editors")


def bulk_create_conflicts_false(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group.objects.bulk_create([Group(name="editors")], ignore_conflicts=False)


def copy_in_a_loop(apps: Any, schema_editor: Any) -> None:
    Config = apps.get_model("shop", "Config")
    Setting = apps.get_model("shop", "Setting")
    for config in Config.objects.all():
        if config.value:
            Setting.objects.create(key=config.key, value=config.value)


def other_app_group(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.create(name="editors")


def seed_from_a_literal_dict(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    for name, _label in {"editors": "Editors", "viewers": "Viewers"}.items():
        Group.objects.create(name=name)


def seed_in_a_range(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group.objects.bulk_create([Group(name=f"group {i}") for i in range(3)])


def copy_from_a_cursor(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, key FROM shop_config")
        rows = cursor.fetchall()
    Setting.objects.bulk_create([Setting(pk=r[0], key=r[1]) for r in rows])


def one_per_name_in_a_variable(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    names = [c.key for c in apps.get_model("shop", "Config").objects.all()]
    for name in names:
        Group.objects.create(name=name)


def objects_built_elsewhere(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    objs = [Group(name=n) for n in ("a", "b")]
    Group.objects.bulk_create(objs)


# Rows written once with keys the code spells: only a row made by hand, or left by a
# rolled-back run, can hold the same key (info). Rows driven by data: a copy can meet the
# keys another writer made in the meantime (warning).
SEED_INSERTS = {
    "create": create_group,
    "bulk_create_using": create_through_using,
    "instance_save": build_and_save,
    "inline_instance_save": construct_and_save_inline,
    "inline_get_model": inline_get_model,
    "ignore_conflicts_false": bulk_create_conflicts_false,
    "literal_dict_items": seed_from_a_literal_dict,
    "range": seed_in_a_range,
}
COPY_INSERTS = {
    "bulk_create_copy": copy_config,
    "loop_with_unrelated_if": copy_in_a_loop,
    "cursor_rows_with_pk": copy_from_a_cursor,
    "loop_over_a_variable": one_per_name_in_a_variable,
    "objects_not_spelled_at_the_call": objects_built_elsewhere,
}
PLAIN_INSERTS = {**SEED_INSERTS, **COPY_INSERTS}


@pytest.mark.parametrize("code", COPY_INSERTS.values(), ids=COPY_INSERTS.keys())
def test_flags_a_copy_into_a_table_of_s0(code: Callable[..., Any]) -> None:
    found = findings([run(code)], [group_model(), config_model(), setting_model()])
    assert found and {f.rule for f in found} == {"D205"}
    assert all(f.severity is Severity.WARNING for f in found)
    assert all("may already have written" in f.message for f in found)


@pytest.mark.parametrize("code", SEED_INSERTS.values(), ids=SEED_INSERTS.keys())
def test_seed_rows_into_a_table_of_s0_are_info(code: Callable[..., Any]) -> None:
    found = findings([run(code)], [group_model(), config_model(), setting_model()])
    assert found and {f.rule for f in found} == {"D205"}
    assert all(f.severity is Severity.INFO for f in found)
    assert all("inserts a fixed row into `shop_group`" in f.message for f in found)


@pytest.mark.parametrize("code", SEED_INSERTS.values(), ids=SEED_INSERTS.keys())
def test_seed_rows_warn_when_start_up_code_queries_the_table(code: Callable[..., Any]) -> None:
    before = [group_model(), config_model(), setting_model()]
    found = findings([run(code)], before, startup_tables=frozenset({"shop_group", "id"}))
    assert [f.severity for f in found] == [Severity.WARNING] * len(found) and found
    assert all("start-up code (it queries the table" in f.message for f in found)
    # Start-up queries of other tables do not count.
    other = findings([run(code)], before, startup_tables=frozenset({"shop_setting"}))
    assert other and all(f.severity is Severity.INFO for f in other)


@pytest.mark.parametrize("code", SEED_INSERTS.values(), ids=SEED_INSERTS.keys())
def test_seed_rows_warn_when_start_up_is_unknown_or_non_atomic(code: Callable[..., Any]) -> None:
    before = [group_model(), config_model(), setting_model()]
    unknown = findings([run(code)], before, startup_tables=None)
    assert unknown and all(f.severity is Severity.WARNING for f in unknown)
    non_atomic = findings([run(code)], before, atomic=False)
    assert non_atomic and all(f.severity is Severity.WARNING for f in non_atomic)
    assert all("half-run of this non-atomic migration" in f.message for f in non_atomic)


def test_points_at_the_line_of_the_insert() -> None:
    [finding] = findings([run(create_group)], [group_model()])
    assert finding.location.path and finding.location.path.endswith(".py")
    assert finding.location.line == create_group.__code__.co_firstlineno + 2
    assert "`Group.objects.create(name='editors')`" in finding.message
    assert "`shop_group`" in finding.message


def test_flags_a_model_of_another_app() -> None:
    found = findings([run(other_app_group)], [group_model()], other_apps={"auth": [group_model()]})
    assert [f.rule for f in found] == ["D205"] and "`auth_group`" in found[0].message


# -- forward functions that stay silent -----------------------------------------------------


def get_or_create_group(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group.objects.get_or_create(name="editors")


def update_or_create_setting(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    Setting.objects.update_or_create(key="SHOP_NAME", defaults={"value": "Shop"})


def recopy_idempotent(apps: Any, schema_editor: Any) -> None:
    Config = apps.get_model("shop", "Config")
    Setting = apps.get_model("shop", "Setting")
    Setting.objects.bulk_create(
        [Setting(key=c.key, value=c.value) for c in Config.objects.all()],
        ignore_conflicts=True,
        batch_size=500,
    )


def upsert(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    Setting.objects.bulk_create(
        [Setting(key="A", value=1)],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["value"],
    )


def guarded_by_exists(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    if not Group.objects.filter(name="editors").exists():
        Group.objects.create(name="editors")


def guarded_by_does_not_exist(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    try:
        Group.objects.get(name="editors")
    except Group.DoesNotExist:
        Group.objects.create(name="editors")


def absorbs_in_a_savepoint(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    try:
        with transaction.atomic():
            Group.objects.create(name="editors")
    except IntegrityError:
        return


def suppresses_in_a_savepoint(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    with contextlib.suppress(IntegrityError), transaction.atomic():
        Group.objects.create(name="editors")


def absorbs_without_savepoint(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    try:
        Group.objects.create(name="editors")
    except IntegrityError:
        return


def updates_only(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group.objects.filter(name="Editors").update(name="editors")
    for group in Group.objects.all():
        group.save()


def save_with_explicit_pk(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Group(pk=1, name="editors").save()


def only_missing_rows(apps: Any, schema_editor: Any) -> None:
    Config = apps.get_model("shop", "Config")
    Setting = apps.get_model("shop", "Setting")
    for config in Config.objects.filter(setting__isnull=True):
        Setting.objects.create(key=config.key, value=config.value)


def computed_model_name(apps: Any, schema_editor: Any) -> None:
    for name in ("Group", "Config"):
        Model = apps.get_model("shop", name)
        Model.objects.create()


def conflicts_from_options(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    options = {"ignore_conflicts": True}
    Group.objects.bulk_create([Group(name="editors")], **options)


SILENT = {
    "get_or_create": get_or_create_group,
    "update_or_create": update_or_create_setting,
    "bulk_create_ignore_conflicts": recopy_idempotent,
    "bulk_create_update_conflicts": upsert,
    "if_not_exists": guarded_by_exists,
    "except_does_not_exist": guarded_by_does_not_exist,
    "except_integrity_error_in_savepoint": absorbs_in_a_savepoint,
    "suppress_integrity_error_in_savepoint": suppresses_in_a_savepoint,
    "update_and_save_existing": updates_only,
    "save_with_explicit_pk": save_with_explicit_pk,
    "loop_over_missing_rows": only_missing_rows,
    "computed_model_name": computed_model_name,
    "conflict_flag_in_kwargs": conflicts_from_options,
}


@pytest.mark.parametrize("code", SILENT.values(), ids=SILENT.keys())
def test_ignores_idempotent_or_unknown_inserts(code: Callable[..., Any]) -> None:
    assert findings([run(code)], [group_model(), config_model(), setting_model()]) == []


def test_flags_integrity_error_swallowed_inside_the_migration_transaction() -> None:
    [finding] = findings([run(absorbs_without_savepoint)], [group_model()])
    assert finding.rule == "D205" and "current transaction is aborted" in finding.message


def test_ignores_integrity_error_swallowed_in_a_non_atomic_migration() -> None:
    assert findings([run(absorbs_without_savepoint)], [group_model()], atomic=False) == []


def test_ignores_reverse_code() -> None:
    op = migrations.RunPython(migrations.RunPython.noop, create_group)
    assert findings([op], [group_model()]) == []


def test_ignores_lambdas_and_callables_without_source() -> None:
    op = migrations.RunPython(print, migrations.RunPython.noop)
    assert findings([op], [group_model()]) == []


# -- tables new in the unit: the django-constance story ---------------------------------------


def test_ignores_insert_into_table_created_by_the_same_atomic_migration() -> None:
    ops = [setting_model(), run(copy_config)]
    assert findings(ops, [config_model()]) == []


def test_flags_insert_into_table_created_by_the_same_non_atomic_migration() -> None:
    # A failure after CreateModel commits leaves the table; a retry or start-up code fills it.
    ops = [setting_model(), run(copy_config)]
    found = findings(ops, [config_model()], atomic=False)
    assert [f.rule for f in found] == ["D205"]
    assert "start-up code or an earlier half-run" in found[0].message


def test_flags_insert_into_table_created_earlier_in_the_unit() -> None:
    # django-constance: the new table exists, the new release's AppConfig.ready() (run by
    # `migrate` itself) writes default keys, then the copy collides with them.
    found = findings([run(copy_config)], [config_model()], unit_before=[[setting_model()]])
    assert [f.rule for f in found] == ["D205"]


def test_ignores_insert_into_a_model_that_does_not_exist() -> None:
    assert findings([run(create_group)], [config_model()]) == []


def test_ignores_state_only_noop() -> None:
    op = migrations.SeparateDatabaseAndState(state_operations=[config_model()])
    assert findings([op], [group_model()]) == []


# -- RunSQL --------------------------------------------------------------------------------


def test_flags_runsql_insert_without_conflict_handling() -> None:
    seed = migrations.RunSQL("INSERT INTO shop_group (name) VALUES ('editors')")
    [finding] = findings([seed], [group_model()])
    assert (finding.rule, finding.severity) == ("D205", Severity.INFO)
    assert "INSERT INTO shop_group" in finding.message
    [at_start_up] = findings([seed], [group_model()], startup_tables=frozenset({"shop_group"}))
    assert at_start_up.severity is Severity.WARNING
    copy = migrations.RunSQL("INSERT INTO shop_group (name) SELECT key FROM shop_config")
    [finding] = findings([copy], [group_model(), config_model()])
    assert (finding.rule, finding.severity) == ("D205", Severity.WARNING)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO shop_group (name) VALUES ('editors') ON CONFLICT DO NOTHING",
        "INSERT INTO shop_group (name) VALUES ('editors') ON CONFLICT (name) DO UPDATE"
        " SET name = EXCLUDED.name",
        "INSERT INTO shop_group (name) SELECT 'editors' WHERE NOT EXISTS"
        " (SELECT 1 FROM shop_group WHERE name = 'editors')",
        "INSERT INTO other_table (name) VALUES ('editors')",
        "UPDATE shop_group SET name = 'editors' WHERE name = 'Editors'",
    ],
    ids=["on_conflict_nothing", "on_conflict_update", "where_not_exists", "unknown", "update"],
)
def test_ignores_runsql_that_cannot_duplicate(sql: str) -> None:
    assert findings([migrations.RunSQL(sql)], [group_model()]) == []


def test_ignores_runsql_insert_into_table_created_in_the_unit() -> None:
    op = migrations.RunSQL("INSERT INTO shop_group (name) VALUES ('editors')")
    assert findings([op], unit_before=[[group_model()]]) == []


# -- a key to clash on -----------------------------------------------------------------------


def workflow_models() -> list[Operation]:
    return [
        migrations.CreateModel(
            "Workflow",
            [
                ("id", models.AutoField(primary_key=True)),
                ("name", models.CharField(max_length=255)),
            ],
        ),
        migrations.CreateModel(
            "WorkflowTask",
            [
                ("id", models.AutoField(primary_key=True)),
                ("workflow", models.ForeignKey("shop.Workflow", models.CASCADE)),
                ("task", models.IntegerField()),
            ],
            options={"unique_together": {("workflow", "task")}},
        ),
        migrations.CreateModel(
            "Page",
            [
                ("id", models.AutoField(primary_key=True)),
                ("path", models.CharField(max_length=255, unique=True)),
            ],
        ),
        migrations.CreateModel(
            "HomePage",
            [
                (
                    "page_ptr",
                    models.OneToOneField(
                        "shop.Page",
                        models.CASCADE,
                        parent_link=True,
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
            bases=("shop.page",),
        ),
        migrations.CreateModel(
            "Note",
            [
                ("id", models.UUIDField(primary_key=True)),
                ("text", models.TextField()),
            ],
        ),
    ]


def add_workflow(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    Workflow.objects.create(name="Moderators approval")


def add_workflow_objects(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    Workflow.objects.bulk_create([Workflow(name=n) for n in ("a", "b")])
    Workflow(name="c").save()


def add_workflow_with_id(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    Workflow.objects.create(id=1, name="Moderators approval")


def copy_workflows_with_ids(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    Workflow.objects.bulk_create([Workflow(pk=i, name=str(i)) for i in range(3)])


def add_workflow_and_task(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    WorkflowTask = apps.get_model("shop", "WorkflowTask")
    workflow = Workflow.objects.create(name="Moderators approval")
    WorkflowTask.objects.create(workflow=workflow, task=1)
    WorkflowTask.objects.create(workflow_id=workflow.pk, task=2)


def add_task_to_existing_workflow(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    WorkflowTask = apps.get_model("shop", "WorkflowTask")
    workflow = Workflow.objects.get(name="Moderators approval")
    WorkflowTask.objects.create(workflow=workflow, task=1)


def add_task_before_workflow(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    WorkflowTask = apps.get_model("shop", "WorkflowTask")
    workflow = Workflow.objects.first()
    WorkflowTask.objects.create(workflow=workflow, task=1)
    workflow = Workflow.objects.create(name="later")


def add_home_page(apps: Any, schema_editor: Any) -> None:
    HomePage = apps.get_model("shop", "HomePage")
    HomePage.objects.create(path="00010001")


def add_note(apps: Any, schema_editor: Any) -> None:
    Note = apps.get_model("shop", "Note")
    Note.objects.create(id="6c3c1a43-1a7e-4d8e-9a44-0c3a6b9f1d11", text="hi")


def _run(code: Callable[..., None]) -> list[Finding]:
    return findings([migrations.RunPython(code, migrations.RunPython.noop)], workflow_models())


@pytest.mark.parametrize(
    "code", [add_workflow, add_workflow_objects], ids=["create", "bulk_create_and_save"]
)
def test_ignores_inserts_into_a_table_without_a_key_beyond_its_automatic_pk(
    code: Callable[..., None],
) -> None:
    assert _run(code) == []


@pytest.mark.parametrize(
    "code", [add_workflow_with_id, copy_workflows_with_ids], ids=["create_id", "bulk_create_pk"]
)
def test_flags_inserts_that_set_the_primary_key(code: Callable[..., None]) -> None:
    found = _run(code)
    assert [f.rule for f in found] and {f.rule for f in found} == {"D205"}
    assert all("`id`" in f.message for f in found)


def test_ignores_a_child_keyed_by_a_row_the_same_function_inserted() -> None:
    assert _run(add_workflow_and_task) == []


@pytest.mark.parametrize(
    "code",
    [add_task_to_existing_workflow, add_task_before_workflow],
    ids=["looked_up_parent", "parent_rebound_after"],
)
def test_flags_a_child_keyed_by_a_row_that_may_exist(code: Callable[..., None]) -> None:
    [finding] = _run(code)
    assert finding.rule == "D205" and "`task`" in finding.message


def test_flags_a_multi_table_child_whose_parent_has_a_unique_field() -> None:
    [finding] = _run(add_home_page)
    assert finding.rule == "D205" and "`path`" in finding.message


def test_flags_an_insert_into_a_table_whose_primary_key_is_not_generated() -> None:
    [finding] = _run(add_note)
    assert finding.rule == "D205"


@pytest.mark.parametrize(
    ("sql", "fires"),
    [
        ("INSERT INTO shop_workflow (name) VALUES ('a')", False),
        ("INSERT INTO shop_workflow (id, name) VALUES (1, 'a')", True),
        ("INSERT INTO shop_workflow VALUES (1, 'a')", True),
        ("INSERT INTO shop_page (path) VALUES ('0001')", True),
    ],
    ids=["no_key", "explicit_id", "no_column_list", "unique_column"],
)
def test_judges_sql_inserts_by_their_key(sql: str, fires: bool) -> None:
    found = findings([migrations.RunSQL(sql)], workflow_models())
    assert [f.rule for f in found] == (["D205"] if fires else [])


def add_task_to_new_workflow_after_lookup(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    WorkflowTask = apps.get_model("shop", "WorkflowTask")
    workflow = Workflow.objects.filter(name="approval").first()
    if not workflow:
        workflow = Workflow.objects.create(name="approval")
        WorkflowTask.objects.create(workflow=workflow, task=1)


def add_task_after_a_branch_insert(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    WorkflowTask = apps.get_model("shop", "WorkflowTask")
    workflow = Workflow.objects.filter(name="approval").first()
    if not workflow:
        workflow = Workflow.objects.create(name="approval")
    WorkflowTask.objects.create(workflow=workflow, task=1)


def add_task_per_loop_variable(apps: Any, schema_editor: Any) -> None:
    Workflow = apps.get_model("shop", "Workflow")
    WorkflowTask = apps.get_model("shop", "WorkflowTask")
    workflow = Workflow.objects.create(name="approval")
    for workflow in Workflow.objects.all():
        WorkflowTask.objects.create(workflow=workflow, task=1)


def test_ignores_a_child_of_a_row_inserted_in_the_same_branch_after_a_lookup() -> None:
    assert _run(add_task_to_new_workflow_after_lookup) == []


@pytest.mark.parametrize(
    "code",
    [add_task_after_a_branch_insert, add_task_per_loop_variable],
    ids=["insert_in_one_branch_only", "loop_variable_shadows"],
)
def test_flags_a_child_whose_parent_variable_may_hold_an_existing_row(
    code: Callable[..., None],
) -> None:
    assert [f.rule for f in _run(code)] == ["D205"]


# -- granting a permission the deploy introduces ---------------------------------------------
# Django creates permission rows after migrate, from the models' Meta: a codename that S0's
# models do not declare has no row yet, so no grant of it can exist before the migration.


def permission_models(declared: Sequence[tuple[str, str]] = ()) -> list[Operation]:
    return [
        group_model(),
        migrations.CreateModel(
            "Image",
            [("id", models.BigAutoField(primary_key=True))],
            options={"permissions": list(declared)} if declared else {},
        ),
        migrations.CreateModel(
            "Grant",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("group", models.ForeignKey("shop.Group", models.CASCADE)),
                ("permission", models.ForeignKey("auth.Permission", models.CASCADE)),
            ],
            options={"unique_together": {("group", "permission")}},
        ),
    ]


AUTH = {
    "auth": [
        migrations.CreateModel(
            "Permission",
            [
                ("id", models.AutoField(primary_key=True)),
                ("codename", models.CharField(max_length=100)),
                ("name", models.CharField(max_length=255)),
            ],
        )
    ]
}
DECLARE_CHOOSE = migrations.AlterModelOptions(
    "image", {"permissions": [("choose_image", "Can choose image")]}
)


def get_choose_permission(apps: Any) -> Any:
    Permission = apps.get_model("auth.Permission")
    return Permission.objects.filter(codename__in=["choose_image"]).first()


def grant_through_a_helper(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    permission = get_choose_permission(apps)
    for group in Group.objects.all():
        Grant.objects.create(group=group, permission=permission)


def grant_a_looked_up_permission(apps: Any, schema_editor: Any) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    permission = Permission.objects.get(codename="choose_image")
    for group in Group.objects.all():
        Grant.objects.create(group=group, permission=permission)


def grant_a_created_permission(apps: Any, schema_editor: Any) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    permission, _created = Permission.objects.get_or_create(
        codename="choose_image", defaults={"name": "Can choose image"}
    )
    for group in Group.objects.all():
        Grant.objects.create(group=group, permission=permission)


def grant_an_old_default_permission(apps: Any, schema_editor: Any) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    permission = Permission.objects.get(codename="change_image")
    for group in Group.objects.all():
        Grant.objects.create(group=group, permission=permission)


def grant_old_and_new_permissions(apps: Any, schema_editor: Any) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    permission = Permission.objects.filter(codename__in=["choose_image", "change_image"]).first()
    for group in Group.objects.all():
        Grant.objects.create(group=group, permission=permission)


def grant_an_unpinned_permission(apps: Any, schema_editor: Any) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    permission = Permission.objects.filter(name__startswith="Can choose").first()
    for group in Group.objects.all():
        Grant.objects.create(group=group, permission=permission)


def d205(operations: Sequence[Operation], before: Sequence[Operation], **kw: Any) -> list[Finding]:
    return [f for f in findings(operations, before, **kw) if f.rule == "D205"]


def get_new_permissions(apps: Any) -> Any:
    Permission = apps.get_model("auth.Permission")
    return Permission.objects.filter(codename__in=["choose_image"])


def grant_each_permission_of_a_helper(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    for permission in get_new_permissions(apps):
        for group in Group.objects.filter(permissions=permission):
            Grant.objects.create(group=group, permission=permission)


def grant_each_of_old_and_new_permissions(apps: Any, schema_editor: Any) -> None:
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("shop", "Group")
    Grant = apps.get_model("shop", "Grant")
    for permission in Permission.objects.filter(codename__in=["choose_image", "add_image"]):
        for group in Group.objects.all():
            Grant.objects.create(group=group, permission=permission)


NEW_PERMISSION_GRANTS = {
    "loop-over-helper": grant_each_permission_of_a_helper,
    "helper": grant_through_a_helper,
    "get": grant_a_looked_up_permission,
    "get_or_create": grant_a_created_permission,
}


@pytest.mark.parametrize("code", NEW_PERMISSION_GRANTS.values(), ids=NEW_PERMISSION_GRANTS.keys())
def test_ignores_grants_of_a_permission_the_migration_declares(code: Callable[..., Any]) -> None:
    assert d205([DECLARE_CHOOSE, run(code)], permission_models(), other_apps=AUTH) == []


def test_ignores_grants_of_a_default_permission_of_a_model_new_in_the_unit() -> None:
    def grant_view_report(apps: Any, schema_editor: Any) -> None:
        Permission = apps.get_model("auth", "Permission")
        Group = apps.get_model("shop", "Group")
        Grant = apps.get_model("shop", "Grant")
        permission = Permission.objects.get(codename="view_report")
        for group in Group.objects.all():
            Grant.objects.create(group=group, permission=permission)

    report = migrations.CreateModel("Report", [("id", models.BigAutoField(primary_key=True))])
    assert d205([report, run(grant_view_report)], permission_models(), other_apps=AUTH) == []


@pytest.mark.parametrize("code", NEW_PERMISSION_GRANTS.values(), ids=NEW_PERMISSION_GRANTS.keys())
def test_flags_grants_of_a_permission_s0_already_declares(code: Callable[..., Any]) -> None:
    before = permission_models([("choose_image", "Can choose image")])
    assert [f.rule for f in d205([run(code)], before, other_apps=AUTH)] == ["D205"]


@pytest.mark.parametrize("code", NEW_PERMISSION_GRANTS.values(), ids=NEW_PERMISSION_GRANTS.keys())
def test_flags_grants_of_a_new_permission_in_a_non_atomic_migration(
    code: Callable[..., Any],
) -> None:
    found = d205([DECLARE_CHOOSE, run(code)], permission_models(), atomic=False, other_apps=AUTH)
    assert [f.rule for f in found] == ["D205"]


@pytest.mark.parametrize(
    "code",
    [
        grant_an_old_default_permission,
        grant_old_and_new_permissions,
        grant_an_unpinned_permission,
        grant_each_of_old_and_new_permissions,
    ],
    ids=["old-default", "old-and-new", "unpinned", "loop-old-and-new"],
)
def test_flags_grants_of_permissions_that_may_exist(code: Callable[..., Any]) -> None:
    found = d205([DECLARE_CHOOSE, run(code)], permission_models(), other_apps=AUTH)
    assert [f.rule for f in found] == ["D205"]


# -- a lookup before the insert, by fields the key may not hold ----------------------------


def page_and_assignment() -> list[Operation]:
    """A page and the workflow it is assigned to: one row per page (wagtail's WorkflowPage)."""
    return [
        migrations.CreateModel("Page", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel("Workflow", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Assignment",
            [
                (
                    "page",
                    models.OneToOneField(
                        "shop.Page", models.CASCADE, primary_key=True, serialize=False
                    ),
                ),
                ("workflow", models.ForeignKey("shop.Workflow", models.CASCADE)),
            ],
        ),
    ]


def assign_unless_this_exact_pair(apps: Any, schema_editor: Any) -> None:
    Assignment = apps.get_model("shop", "Assignment")
    Page = apps.get_model("shop", "Page")
    workflow = apps.get_model("shop", "Workflow").objects.first()
    for page in Page.objects.all():
        if not Assignment.objects.filter(workflow=workflow, page=page).exists():
            Assignment.objects.create(workflow=workflow, page=page)


def set_unless_same_value(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    if not Setting.objects.filter(key="theme", value="dark").exists():
        Setting.objects.create(key="theme", value="dark")


def set_unless_same_value_chained(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    if Setting.objects.filter(key="theme").filter(value="dark").count() == 0:
        Setting.objects.create(key="theme", value="dark")


# Graded as any insert: rows driven by data warn, a seed row in an atomic migration is info.
WIDER_LOOKUPS = {
    "one_to_one_key_looked_up_with_another_field": (
        assign_unless_this_exact_pair,
        Severity.WARNING,
    ),
    "unique_key_looked_up_with_its_value": (set_unless_same_value, Severity.INFO),
    "chained_filters": (set_unless_same_value_chained, Severity.INFO),
}


@pytest.mark.parametrize(("code", "severity"), WIDER_LOOKUPS.values(), ids=WIDER_LOOKUPS.keys())
def test_flags_an_insert_guarded_by_a_lookup_wider_than_the_key(
    code: Callable[..., Any], severity: Severity
) -> None:
    found = findings([run(code)], [setting_model(), *page_and_assignment()])
    [finding] = found
    assert finding.rule == "D205" and finding.severity is severity
    assert "finds no row" in finding.message and "another value passes the" in finding.message


def test_names_the_key_the_lookup_misses() -> None:
    [finding] = findings([run(assign_unless_this_exact_pair)], page_and_assignment())
    assert "lookup by `page`, `workflow`" in finding.message
    assert "unique on its key (`page`)" in finding.message


def assign_unless_page_has_one(apps: Any, schema_editor: Any) -> None:
    Assignment = apps.get_model("shop", "Assignment")
    Page = apps.get_model("shop", "Page")
    workflow = apps.get_model("shop", "Workflow").objects.first()
    for page in Page.objects.all():
        if not Assignment.objects.filter(page_id=page.pk).exists():
            Assignment.objects.create(workflow=workflow, page=page)


def assign_unless_pk_taken(apps: Any, schema_editor: Any) -> None:
    Assignment = apps.get_model("shop", "Assignment")
    Page = apps.get_model("shop", "Page")
    workflow = apps.get_model("shop", "Workflow").objects.first()
    for page in Page.objects.all():
        if Assignment.objects.filter(pk=page.pk).first() is None:
            Assignment.objects.create(workflow=workflow, page=page)


def set_unless_key_taken_any_case(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    if not Setting.objects.filter(key__iexact="theme").exists():
        Setting.objects.create(key="theme", value="dark")


def set_unless_q(apps: Any, schema_editor: Any) -> None:
    from django.db.models import Q

    Setting = apps.get_model("shop", "Setting")
    if not Setting.objects.filter(Q(key="theme") | Q(value="dark")).exists():
        Setting.objects.create(key="theme", value="dark")


def set_unless_excluded(apps: Any, schema_editor: Any) -> None:
    Setting = apps.get_model("shop", "Setting")
    if not Setting.objects.exclude(value=None).filter(key="theme", value="x").exists():
        Setting.objects.create(key="theme", value="dark")


COVERING_OR_UNKNOWN_LOOKUPS = {
    "foreign_key_column_of_the_key": assign_unless_page_has_one,
    "pk": assign_unless_pk_taken,
    "key_with_a_lookup_suffix": set_unless_key_taken_any_case,
    "q_object_unknown": set_unless_q,
    "exclude_unknown": set_unless_excluded,
}


@pytest.mark.parametrize(
    "code", COVERING_OR_UNKNOWN_LOOKUPS.values(), ids=COVERING_OR_UNKNOWN_LOOKUPS.keys()
)
def test_ignores_a_lookup_that_covers_the_key_or_cannot_be_read(
    code: Callable[..., Any],
) -> None:
    assert findings([run(code)], [setting_model(), *page_and_assignment()]) == []


def member_model() -> Operation:
    """Unique e-mail among the members not deleted (a soft delete)."""
    from django.db.models import Q

    return migrations.CreateModel(
        "Member",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("email", models.CharField(max_length=100)),
            ("deleted", models.BooleanField(default=False)),
            ("team", models.CharField(max_length=20, null=True)),
        ],
        options={
            "constraints": [
                models.UniqueConstraint(
                    fields=["email"], condition=Q(deleted=False), name="live_email_uniq"
                )
            ]
        },
    )


def invite_unless_live_member(apps: Any, schema_editor: Any) -> None:
    Member = apps.get_model("shop", "Member")
    for email in apps.get_model("shop", "Setting").objects.values_list("key", flat=True):
        if not Member.objects.filter(email=email, deleted=False).exists():
            Member.objects.create(email=email)


def invite_unless_in_team(apps: Any, schema_editor: Any) -> None:
    Member = apps.get_model("shop", "Member")
    for email in apps.get_model("shop", "Setting").objects.values_list("key", flat=True):
        if not Member.objects.filter(email=email, team="core").exists():
            Member.objects.create(email=email, team="core")


def test_a_lookup_on_a_conditional_keys_condition_covers_it() -> None:
    assert findings([run(invite_unless_live_member)], [setting_model(), member_model()]) == []


def test_a_lookup_on_another_field_of_a_conditional_key_does_not() -> None:
    [finding] = findings([run(invite_unless_in_team)], [setting_model(), member_model()])
    assert finding.rule == "D205" and "lookup by `email`, `team`" in finding.message
