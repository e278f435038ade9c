"""Scratch databases and synthetic rows, on the real PostgreSQL server (and SQLite)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections, migrations, models
from django.db.migrations.state import ProjectState

from django_rollout.db.scratch import scratch_database
from django_rollout.db.seed import top_up
from django_rollout.errors import DatabaseUnavailableError
from tests._project import PG, extra_aliases

SOURCE = "rollout_pg_source"
LITE = "rollout_lite_source"


@pytest.fixture(autouse=True)
def aliases() -> Iterator[None]:
    with extra_aliases(SOURCE, LITE):
        yield


def pg_exists(name: str) -> bool:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


# -- scratch databases -----------------------------------------------------------------------


def test_postgresql_scratch_is_usable_then_dropped() -> None:
    with scratch_database(SOURCE) as one, scratch_database(SOURCE) as two:
        assert one.name != two.name and one.name.startswith("rollout_scratch_")
        with connections[one.alias].cursor() as cursor:
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone()[0] == one.name
        assert pg_exists(one.name) and pg_exists(two.name)
    assert not pg_exists(one.name) and not pg_exists(two.name)
    assert one.alias not in connections.settings


def test_default_and_source_lead_to_the_scratch_while_it_lives() -> None:
    # A data migration that writes through Model.objects goes to "default": during a
    # rehearsal that must be the scratch database, never the user's own.
    before = {a: connections.settings[a] for a in ("default", SOURCE)}
    connections[SOURCE].ensure_connection()  # an open session of the real database
    with scratch_database(SOURCE) as scratch:
        for alias in ("default", SOURCE):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT current_database()")
                assert cursor.fetchone()[0] == scratch.name
    assert {a: connections.settings[a] for a in ("default", SOURCE)} == before
    with connections[SOURCE].cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == "test"


def test_postgresql_scratch_is_dropped_on_error_and_interrupt() -> None:
    for error in (RuntimeError("migration failed"), KeyboardInterrupt()):
        with pytest.raises(type(error)), scratch_database(SOURCE) as scratch:
            # An open session must not keep the database alive.
            connections[scratch.alias].ensure_connection()
            raise error
        assert not pg_exists(scratch.name)


def test_postgresql_scratch_is_kept_on_request() -> None:
    with scratch_database(SOURCE, keep=True) as scratch:
        pass
    try:
        assert pg_exists(scratch.name)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch.name}" WITH (FORCE)')


def test_sqlite_scratch_is_a_temporary_file() -> None:
    with scratch_database(LITE) as scratch:
        with connections[scratch.alias].cursor() as cursor:
            cursor.execute("CREATE TABLE t (n integer)")
        assert scratch.vendor == "sqlite" and os.path.exists(scratch.name)
    assert not os.path.exists(scratch.name)


def test_unknown_alias_and_unreachable_server_are_one_line_errors() -> None:
    with (
        pytest.raises(DatabaseUnavailableError, match="no database alias 'nope'"),
        scratch_database("nope"),
    ):
        pass
    connections.settings["rollout_dead"] = {**connections.settings[SOURCE], "PORT": 1}
    connections.settings["rollout_dead"]["OPTIONS"] = {"connect_timeout": 3}
    try:
        with (
            pytest.raises(DatabaseUnavailableError, match="cannot create a scratch database"),
            scratch_database("rollout_dead"),
        ):
            pass
    finally:
        connections.settings.pop("rollout_dead")


# -- synthetic rows --------------------------------------------------------------------------

KINDS = [("a", "Alpha"), ("b", "Beta"), ("c", "Gamma")]


def _create_tables(alias: str, apps: Any) -> None:
    """Create every model of ``apps`` on ``alias``."""
    with connections[alias].schema_editor() as editor:
        for model in apps.get_models():
            editor.create_model(model)


def state() -> ProjectState:
    operations: list[Any] = [
        migrations.CreateModel(
            "Category",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("code", models.CharField(max_length=5, unique=True)),
                ("name", models.CharField(max_length=8)),
                ("kind", models.CharField(max_length=1, choices=KINDS, default="a")),
            ],
        ),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("category", models.ForeignKey("seedapp.category", models.CASCADE)),
                ("sku", models.CharField(max_length=12, unique=True)),
                ("price", models.DecimalField(max_digits=6, decimal_places=2)),
                ("note", models.TextField(null=True)),
                ("active", models.BooleanField(default=False)),
                ("created", models.DateTimeField()),
                ("meta", models.JSONField(default=dict)),
                ("uid", models.UUIDField(unique=True)),
                ("stock", models.PositiveSmallIntegerField(default=0)),
                ("email", models.EmailField(null=True)),
            ],
        ),
        migrations.CreateModel(
            "Tag", [("id", models.BigAutoField(primary_key=True)), ("label", models.SlugField())]
        ),
        migrations.CreateModel(
            "ProductTag",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("product", models.ForeignKey("seedapp.product", models.CASCADE)),
                ("tag", models.ForeignKey("seedapp.tag", models.CASCADE)),
            ],
            options={"unique_together": {("product", "tag")}},
        ),
        migrations.CreateModel(
            "Profile",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("category", models.OneToOneField("seedapp.category", models.CASCADE)),
            ],
        ),
    ]
    project = ProjectState()
    for op in operations:
        op.state_forwards("seedapp", project)
    return project


@pytest.fixture(params=[SOURCE, LITE], ids=["postgresql", "sqlite"])
def seeded(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    apps = state().apps
    with scratch_database(request.param) as scratch:
        _create_tables(scratch.alias, apps)
        yield apps, scratch.alias


def test_top_up_fills_every_table_with_varied_valid_rows(seeded: tuple[Any, str]) -> None:
    apps, alias = seeded
    result = top_up(apps, alias, 20)
    assert result.skipped == {}
    assert set(result.inserted.values()) == {20}
    Category = apps.get_model("seedapp", "Category")
    Product = apps.get_model("seedapp", "Product")
    categories = list(Category.objects.using(alias).all())
    assert all(len(c.code) <= 5 and len(c.name) <= 8 for c in categories)
    assert {c.kind for c in categories} == {"a", "b", "c"}
    products = list(Product.objects.using(alias).all())
    # Every field holds at least two distinct values, and nullable ones hold NULLs too.
    for name in ("sku", "price", "active", "created", "meta", "uid", "stock", "category_id"):
        assert len({str(getattr(p, name)) for p in products}) >= 2, name
    assert any(p.note is None for p in products) and any(p.note for p in products)
    assert any(p.active is not False for p in products) and any(p.stock != 0 for p in products)
    # The unique pair of foreign keys got as many rows as asked, without a collision.
    assert apps.get_model("seedapp", "ProductTag").objects.using(alias).count() == 20


def test_top_up_tops_up(seeded: tuple[Any, str]) -> None:
    apps, alias = seeded
    top_up(apps, alias, 5)
    assert top_up(apps, alias, 5).inserted == {}
    again = top_up(apps, alias, 12)
    assert again.inserted["seedapp_product"] == 7
    assert apps.get_model("seedapp", "Product").objects.using(alias).count() == 12


def test_a_one_to_one_takes_each_target_once(seeded: tuple[Any, str]) -> None:
    apps, alias = seeded
    Category = apps.get_model("seedapp", "Category")
    Profile = apps.get_model("seedapp", "Profile")
    top_up(apps, alias, 4)
    first_two = list(Category.objects.using(alias).order_by("pk").values_list("pk", flat=True)[:2])
    Category.objects.using(alias).filter(pk__in=first_two).delete()  # their profiles go too
    assert Profile.objects.using(alias).count() == 2
    top_up(apps, alias, 6)
    # Six categories again; the profiles take the four without one, each exactly once.
    assert Category.objects.using(alias).count() == 6
    linked = list(Profile.objects.using(alias).values_list("category_id", flat=True))
    assert len(linked) == 6 and len(set(linked)) == 6


def _inheriting() -> Any:
    """A multi-table child (as wagtail's pages are): the parent holds a unique column."""
    project = ProjectState()
    for op in [
        migrations.CreateModel(
            "Page",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("path", models.CharField(max_length=20, unique=True)),
                ("title", models.CharField(max_length=20)),
            ],
        ),
        migrations.CreateModel(
            "HomePage",
            [
                (
                    "page_ptr",
                    models.OneToOneField(
                        "seedapp.page",
                        models.CASCADE,
                        parent_link=True,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("intro", models.TextField(null=True)),
            ],
            bases=("seedapp.page",),
        ),
    ]:
        op.state_forwards("seedapp", project)
    return project.apps


@pytest.mark.parametrize("alias", [SOURCE, LITE], ids=["postgresql", "sqlite"])
def test_a_multi_table_child_is_seeded_with_rows_of_its_own_parents(alias: str) -> None:
    from django_rollout.db.seed import new_row

    apps = _inheriting()
    Page, HomePage = apps.get_model("seedapp", "Page"), apps.get_model("seedapp", "HomePage")
    with scratch_database(alias) as scratch:
        with connections[scratch.alias].schema_editor() as editor:
            for model in (Page, HomePage):
                editor.create_model(model)
        result = top_up(apps, scratch.alias, 6)
        assert result.skipped == {} and result.inserted == {
            "seedapp_page": 6,
            "seedapp_homepage": 6,
        }
        # Each child row has a parent row of its own: six pages, then six more with homes.
        pages = Page.objects.using(scratch.alias)
        assert pages.count() == 12
        homes = set(HomePage.objects.using(scratch.alias).values_list("pk", flat=True))
        assert len(homes) == 6 and homes <= set(pages.values_list("pk", flat=True))
        assert len(set(pages.values_list("path", flat=True))) == 12
        # A second top-up and the traffic's rows keep the parent's unique column unique.
        assert top_up(apps, scratch.alias, 8).inserted == {"seedapp_homepage": 2}
        made = new_row(HomePage, scratch.alias, 3)
        assert made is not None
        made.save(using=scratch.alias, force_insert=True)
        assert pages.count() == 15 and len(set(pages.values_list("path", flat=True))) == 15


def test_a_conditional_unique_constraint_keeps_seeded_and_traffic_rows_apart() -> None:
    from django_rollout.db.seed import _unique_sets

    project = state()
    migrations.AddConstraint(
        "producttag",
        models.UniqueConstraint(
            fields=["product"], condition=models.Q(tag__isnull=False), name="one_tag_each"
        ),
    ).state_forwards("seedapp", project)
    migrations.AddConstraint(
        "producttag",
        models.UniqueConstraint(models.F("tag"), name="by_expression"),
    ).state_forwards("seedapp", project)
    sets = _unique_sets(project.apps.get_model("seedapp", "ProductTag"))
    # The pair, and the conditional one as if it held for every row; an expression is not
    # a set of fields.
    assert sets == [("product_id", "tag_id"), ("product_id",)]


def test_traffics_update_of_a_row_deleted_meanwhile_does_not_insert_it_again(
    seeded: tuple[Any, str],
) -> None:
    from django.db import DatabaseError

    from django_rollout.db.traffic import _update

    apps, alias = seeded
    top_up(apps, alias, 3)
    Tag = apps.get_model("seedapp", "Tag")
    tags = Tag.objects.using(alias)
    row = tags.order_by("pk").first()
    tags.filter(pk=row.pk).delete()  # the migration, or another session
    _update(row, alias)
    assert not tags.filter(pk=row.pk).exists() and tags.count() == 2
    if connections[alias].vendor == "postgresql":
        # The database's own refusals still reach the caller (too long for the column).
        kept = tags.order_by("pk").first()
        kept.label = "x" * 80
        with pytest.raises(DatabaseError, match="too long"):
            _update(kept, alias)


class Opaque(models.Field):  # type: ignore[type-arg]
    """A third-party field type the seeder does not know."""

    def db_type(self, connection: Any) -> str:
        return "text"


def test_a_model_it_cannot_fill_is_reported_not_guessed() -> None:
    project = ProjectState()
    migrations.CreateModel(
        "Thing", [("id", models.BigAutoField(primary_key=True)), ("blob", Opaque())]
    ).state_forwards("seedapp", project)
    apps = project.apps
    with scratch_database(SOURCE) as scratch:
        with connections[scratch.alias].schema_editor() as editor:
            editor.create_model(apps.get_model("seedapp", "Thing"))
        result = top_up(apps, scratch.alias, 3)
    assert result.inserted == {}
    assert "`blob`: no synthetic value for Opaque" in result.skipped["seedapp_thing"]


def test_traffic_row_numbers_stay_within_the_calendar() -> None:
    from django_rollout.db.seed import _value
    from django_rollout.db.traffic import FIRST_ROW

    day, moment = models.DateField(), models.DateTimeField()
    for n in (FIRST_ROW, FIRST_ROW * 10, 2**31):
        assert _value(day, n, None).year <= 9999
        assert _value(moment, n, None).year <= 9999
    assert _value(day, 1, None) != _value(day, 2, None)


def test_background_sessions_run_in_a_child_and_report_back() -> None:
    """Background traffic runs in a forked child (its own interpreter lock): the parent
    gets each session's backend pid while it runs, then the child's errors and counters;
    the parent's own connection, inherited by the child, still works afterwards."""
    from django_rollout.db.traffic import ROWS_PER_BACKGROUND, Traffic

    apps = state().apps
    with scratch_database(SOURCE) as scratch:
        connection = connections[scratch.alias]
        _create_tables(scratch.alias, apps)
        top_up(apps, scratch.alias, 5)
        with connection.schema_editor() as editor:  # old code still knows this table
            editor.delete_model(apps.get_model("seedapp", "Tag"))
        traffic = Traffic(scratch.alias)
        before = traffic._n
        sink: list[Any] = []
        where = {"app_label": "seedapp", "migration": "0002_x"}
        models_now = [apps.get_model("seedapp", n) for n in ("Category", "Product", "Tag")]
        with traffic.background(models_now, "old", where, sink) as pids:
            with connection.cursor() as cursor:  # the parent's session, shared by the fork
                for _ in range(100):
                    cursor.execute("SELECT pg_sleep(0.01)")
                    if len(pids) == 3:
                        break
            assert len(pids) == 3 and os.getpid() not in pids
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM seedapp_category")
            assert cursor.fetchone()[0] >= 5
        assert traffic.counters.actions["old"] > 0 and traffic.counters.errors["old"] > 0
        missing = [o for o in sink if o.sqlstate == "42P01"]
        assert missing and missing[0].table == "seedapp_tag" and missing[0].code_version == "old"
        assert all(o.migration == "0002_x" for o in sink)
        assert traffic._n == before + ROWS_PER_BACKGROUND  # the child's numbers were its own


def _children() -> list[int]:
    """The pids of this process's live children (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _autogroup(pid: int) -> list[str]:
    """A process's scheduling autogroup as Linux shows it, split; [] if it shows none."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split()
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_background_child_runs_in_a_session_of_its_own_below_the_migration() -> None:
    """The traffic's CPU time must not be charged to the migrating process's scheduling
    group: where Linux groups by session (autogroup), the child's niceness counts only if
    it has a session, and so a group, of its own. A block that raises (Ctrl-C) still ends
    and reaps the child, which no longer gets the terminal's signals."""
    from django_rollout.db.traffic import NICE, Traffic

    apps = state().apps
    with scratch_database(SOURCE) as scratch:
        _create_tables(scratch.alias, apps)
        sink: list[Any] = []
        where = {"app_label": "seedapp", "migration": "0002_x"}
        with (
            pytest.raises(KeyboardInterrupt),
            Traffic(scratch.alias).background(
                [apps.get_model("seedapp", "Category")], "old", where, sink
            ) as pids,
        ):
            assert pids
            [child] = _children()
            assert os.getsid(child) == child != os.getsid(0)
            assert os.getpriority(os.PRIO_PROCESS, child) == NICE
            # "/autogroup-N nice K", or empty for a process in no autogroup: one whose
            # session is still the boot's (a CI runner's), or where cgroups or a disabled
            # sysctl group the scheduling instead. The child's own session gets its own.
            theirs = _autogroup(child)
            if theirs:
                assert theirs[0] != (_autogroup(os.getpid()) or [""])[0]
                assert theirs[-1] == str(NICE)
            raise KeyboardInterrupt
        assert _children() == []
    assert not [o for o in sink if o.action == "connect"]  # it reported back as it ended


def test_background_sessions_commit_without_waiting_for_the_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each background session, and only those, commits without waiting for its WAL flush
    (the migrating session's commits must not queue behind one per traffic transaction);
    what traffic does is the same. Threads instead of a child, so the sessions are seen."""
    from django_rollout.db import traffic as traffic_module

    setting: list[str] = []
    real = traffic_module._commit_without_flush

    def recording(connection: Any) -> None:
        real(connection)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            setting.append(cursor.fetchone()[0])

    monkeypatch.setattr(traffic_module, "_commit_without_flush", recording)
    monkeypatch.delattr(os, "fork")
    apps = state().apps
    with scratch_database(SOURCE) as scratch:
        connection = connections[scratch.alias]
        _create_tables(scratch.alias, apps)
        traffic = traffic_module.Traffic(scratch.alias)
        models_now = [apps.get_model("seedapp", n) for n in ("Category", "Product")]
        where = {"app_label": "seedapp", "migration": "0002_x"}
        with traffic.background(models_now, "old", where, []) as pids:
            assert len(pids) == 2
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"  # the migrating session's: the server's
    assert setting == ["off", "off"]
    assert traffic.counters.actions["old"] > 0


def test_background_child_that_dies_is_reported_not_lost_silently() -> None:
    from django_rollout.db.traffic import Traffic

    class Broken(Traffic):
        def _sessions(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no sessions")

    apps = state().apps
    with scratch_database(SOURCE) as scratch:
        sink: list[Any] = []
        where = {"app_label": "seedapp", "migration": "0002_x"}
        with Broken(scratch.alias).background(
            [apps.get_model("seedapp", "Category")], "old", where, sink
        ) as pids:
            assert pids == []
    assert [o.action for o in sink] == ["connect"]
    assert "without a report" in sink[0].message and sink[0].code_version == "old"


def _tables(shares: list[list[Any]]) -> list[list[str]]:
    return [[m._meta.db_table for m in share] for share in shares]


def test_background_sessions_are_dealt_evenly_when_the_migration_runs_code() -> None:
    from django_rollout.db.traffic import session_shares

    everything = list(state().apps.get_models())
    shares = _tables(session_shares(everything, None))
    assert sorted(t for share in shares for t in share) == sorted(
        m._meta.db_table for m in everything
    )
    assert len(shares) == len(everything)


def test_background_sessions_crowd_the_tables_the_migration_locks() -> None:
    """Every table of S0 keeps traffic; the locked one, and the tables whose foreign keys
    point at it, get sessions of their own."""
    from django_rollout.db.traffic import COLD_SESSIONS, HOT_SESSIONS, session_shares

    everything = list(state().apps.get_models())
    shares = _tables(session_shares(everything, frozenset({"seedapp_tag"})))
    near = {"seedapp_tag", "seedapp_producttag"}  # the product-tag rows point at tags
    hot = [share for share in shares if set(share) <= near]
    assert sorted(map(tuple, hot)) == sorted([(t,) for t in near] * HOT_SESSIONS)
    cold = [share for share in shares if share not in hot]
    assert len(cold) == COLD_SESSIONS
    assert sorted(t for share in cold for t in share) == sorted(
        {m._meta.db_table for m in everything} - near
    )


def test_background_sessions_when_no_locked_table_is_in_s0_or_too_many_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_rollout.db import traffic

    everything = list(state().apps.get_models())
    tables = sorted(m._meta.db_table for m in everything)
    # A table the migration creates: nothing of S0 is near it, all of S0 shares the rest.
    only_cold = _tables(traffic.session_shares(everything, frozenset({"seedapp_new"})))
    assert len(only_cold) == traffic.COLD_SESSIONS
    assert sorted(t for share in only_cold for t in share) == tables
    # More models near the lock than sessions: each still has one, none is left out.
    monkeypatch.setattr(traffic, "MAX_THREADS", 3)
    crowded = _tables(traffic.session_shares(everything, frozenset(tables)))
    assert len(crowded) == 3
    assert sorted(t for share in crowded for t in share) == tables


def test_operation_tables_include_the_tables_foreign_keys_point_at() -> None:
    from django_rollout.db.rehearse import _operation_tables

    before = state()
    migration = migrations.Migration("0002_x", "seedapp")
    migration.operations = [
        migrations.CreateModel(
            "Review",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("product", models.ForeignKey("seedapp.product", models.CASCADE)),
            ],
        ),
        migrations.DeleteModel("ProductTag"),
        migrations.RemoveField("product", "category"),
        migrations.AddField("tag", "parent", models.ForeignKey("seedapp.category", models.CASCADE)),
        migrations.AddIndex("tag", models.Index(fields=["label"], name="tag_label_idx")),
        migrations.RunPython(migrations.RunPython.noop),
    ]
    tables = _operation_tables(migration, before)
    assert tables == {
        0: frozenset({"seedapp_review", "seedapp_product"}),
        1: frozenset({"seedapp_producttag", "seedapp_product", "seedapp_tag"}),
        2: frozenset({"seedapp_product", "seedapp_category"}),
        3: frozenset({"seedapp_tag", "seedapp_category"}),
        4: frozenset({"seedapp_tag"}),
        5: None,
    }


def test_operation_tables_name_a_created_models_own_table() -> None:
    # As django.contrib.admin's LogEntry: a new model whose db_table is set. Matching a
    # traffic error on it to a finding needs the table's real name.
    from django_rollout.db.rehearse import _operation_tables

    migration = migrations.Migration("0002_x", "seedapp")
    migration.operations = [
        migrations.CreateModel(
            "Journal",
            [("id", models.BigAutoField(primary_key=True))],
            options={"db_table": "seed_journal"},
        ),
        migrations.CreateModel(
            "Entry",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("journal", models.ForeignKey("seedapp.journal", models.CASCADE)),
                ("product", models.ForeignKey("seedapp.product", models.CASCADE)),
            ],
            options={"db_table": "seed_entry"},
        ),
        migrations.AddIndex("entry", models.Index(fields=["journal"], name="entry_journal_idx")),
    ]
    assert _operation_tables(migration, state()) == {
        0: frozenset({"seed_journal"}),
        1: frozenset({"seed_entry", "seed_journal", "seedapp_product"}),
        2: frozenset({"seed_entry"}),
    }


def _reprice(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("seedapp", "Product")
    Product.objects.filter(price__lt=1).update(price=1)


def _by_hand(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute("UPDATE seedapp_tag SET label = lower(label)")


def test_traffic_crowds_the_tables_a_data_migrations_code_names() -> None:
    from django_rollout.db.rehearse import Step, _hot, _operation_tables

    before = state()
    migration = migrations.Migration("0002_x", "seedapp")
    migration.operations = [
        migrations.RunPython(_reprice),
        migrations.AddIndex("tag", models.Index(fields=["label"], name="tag_label_idx")),
    ]
    step = Step("seedapp", "0002_x")
    step.tables = _operation_tables(migration, before)
    assert step.tables[0] is None  # for matching findings, code still reaches any table
    # The model it names, and the table its foreign key points at.
    assert _hot(step, migration, before) == {"seedapp_product", "seedapp_category", "seedapp_tag"}

    # Code that reaches past its models: every table, dealt evenly.
    migration.operations = [migrations.RunPython(_by_hand), *migration.operations[1:]]
    step.tables = _operation_tables(migration, before)
    assert _hot(step, migration, before) is None
    migration.operations = [migrations.RunSQL("UPDATE seedapp_tag SET label = 'x'")]
    step.tables = _operation_tables(migration, before)
    assert _hot(step, migration, before) is None


def test_a_row_inserted_behind_the_orms_cascade_is_the_traffics_own_race() -> None:
    """A session deletes a category it made; after the ORM has collected what to cascade
    (nothing) and before the DELETE, another session inserts a product pointing at it (the
    pre_delete signal times it). The DELETE then violates the foreign key. The code knows
    the relation and cascades along it: a race of the traffic's own, not reported."""
    from django.db.models.signals import pre_delete

    from django_rollout.db.traffic import Traffic

    apps = state().apps
    category, product = apps.get_model("seedapp", "Category"), apps.get_model("seedapp", "Product")
    with scratch_database(SOURCE) as scratch:
        connection = connections[scratch.alias]
        _create_tables(scratch.alias, apps)
        doomed = category.objects.using(scratch.alias).create(code="zz", name="doomed")
        params = connection.get_connection_params()

        def insert_behind(**kwargs: Any) -> None:
            with psycopg.connect(**params, autocommit=True) as other:
                other.execute(
                    "INSERT INTO seedapp_product (category_id, sku, price, active, created,"
                    " meta, uid, stock) SELECT %s, 'race', 1, false, now(), '{}',"
                    " gen_random_uuid(), 0",
                    [doomed.pk],
                )

        pre_delete.connect(insert_behind, sender=category, weak=False)
        try:
            rows = category.objects.using(scratch.alias).filter(pk=doomed.pk)
            assert Traffic(scratch.alias)._delete_own(category, rows) is None
        finally:
            pre_delete.disconnect(insert_behind, sender=category)
        assert category.objects.using(scratch.alias).filter(pk=doomed.pk).exists()
        assert product.objects.using(scratch.alias).filter(category_id=doomed.pk).exists()


def test_a_new_rows_target_deleted_under_it_is_a_race_a_target_still_there_is_not() -> None:
    """A product of the new release pointing at a category the other release deleted between
    the choice and the insert is a race, when that release knows the relation (its delete
    would have cascaded had the product come first). When it does not, or when the category
    is still there (the constraint points elsewhere), it is the deploy's."""
    import datetime
    import uuid

    from django.db import IntegrityError

    from django_rollout.db.traffic import Traffic

    apps = state().apps
    category, product = apps.get_model("seedapp", "Category"), apps.get_model("seedapp", "Product")
    with scratch_database(SOURCE) as scratch:
        _create_tables(scratch.alias, apps)
        traffic = Traffic(scratch.alias)

        def refused(category_id: int) -> IntegrityError:
            row = product(
                category_id=category_id,
                sku=uuid.uuid4().hex[:12],
                price=1,
                created=datetime.datetime.now(datetime.UTC),
                uid=uuid.uuid4(),
            )
            with pytest.raises(IntegrityError) as error:
                row.save(using=scratch.alias, force_insert=True)
            known = frozenset({("seedapp_product", "category_id")})
            assert traffic._target_gone(row, error.value, known) is (category_id == gone_pk)
            # A relation the other release does not know: its delete is C109's hazard.
            assert traffic._target_gone(row, error.value, frozenset()) is False
            return error.value

        gone = category.objects.using(scratch.alias).create(code="g", name="gone")
        gone_pk = gone.pk
        gone.delete()
        refused(gone_pk)
        kept = category.objects.using(scratch.alias).create(code="k", name="kept")
        with connections[scratch.alias].cursor() as cursor:
            # The column's constraint now points at another table, which has no such row.
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'seedapp_product'::regclass"
                " AND contype = 'f'"
            )
            [(name,)] = cursor.fetchall()
            cursor.execute(f'ALTER TABLE seedapp_product DROP CONSTRAINT "{name}"')
            cursor.execute(
                "ALTER TABLE seedapp_product ADD CONSTRAINT product_tag_fk FOREIGN KEY"
                " (category_id) REFERENCES seedapp_tag (id)"
            )
        refused(kept.pk)


def test_only_the_round_that_does_not_keep_deletes_the_rows_kept_rows_point_at() -> None:
    """The new release keeps its rows; the old one then deletes what they point at. The
    keeping round must not delete them itself: a model that points at its own kind (a
    parent) had the new release delete the rows its later rows were about to use."""
    from django_rollout.db.traffic import Traffic

    apps = state().apps
    category = apps.get_model("seedapp", "Category")
    with scratch_database(SOURCE) as scratch:
        _create_tables(scratch.alias, apps)
        target = category.objects.using(scratch.alias).create(code="t", name="target")
        traffic = Traffic(scratch.alias)
        traffic.referenced[("seedapp_category", "id")] = {target.pk}
        traffic.round([category], "new", keep=True)
        assert category.objects.using(scratch.alias).filter(pk=target.pk).exists()
        traffic.round([category], "old")
        assert not category.objects.using(scratch.alias).filter(pk=target.pk).exists()


def test_only_a_relation_the_orm_carries_out_makes_a_delete_violation_a_race() -> None:
    from django_rollout.db.traffic import _handled_on_delete

    apps = state().apps
    category = apps.get_model("seedapp", "Category")
    known = frozenset({"category_id"})
    assert _handled_on_delete(category, "seedapp_product", known)  # CASCADE, known to this code
    # A column of that table this code does not know points at it (a release's new foreign
    # key): the deploy's, even though the code knows another relation between the tables.
    assert not _handled_on_delete(category, "seedapp_product", frozenset({"new_category_id"}))
    assert not _handled_on_delete(category, "seedapp_tag", known)  # no relation to it
    assert not _handled_on_delete(category, None, known)
    loose = ProjectState()
    for op in (
        migrations.CreateModel("Category", [("id", models.BigAutoField(primary_key=True))]),
        migrations.CreateModel(
            "Product",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("category", models.ForeignKey("seedapp.category", models.DO_NOTHING)),
            ],
        ),
    ):
        op.state_forwards("seedapp", loose)
    # DO_NOTHING leaves the rows to the database: its refusal is news (C109's kind).
    loose_category = loose.apps.get_model("seedapp", "Category")
    assert not _handled_on_delete(loose_category, "seedapp_product", known)


class DelimitedList(models.TextField):  # type: ignore[type-arg]
    """A text column holding a list, refusing a plain string (as django-pretix's
    MultiStringField does): its own ``to_python`` makes the list."""

    def to_python(self, value: Any) -> Any:
        return value if isinstance(value, list) else [v for v in str(value).split(",") if v]

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise TypeError("Invalid data type passed.")
        return ",".join(value)


class Refusing(models.TextField):  # type: ignore[type-arg]
    """A field whose every value is refused before any SQL."""

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        raise ValueError("not for synthetic rows")


def _apps(*models_: tuple[str, list[tuple[str, models.Field[Any, Any]]]]) -> Any:
    project = ProjectState()
    for name, fields in models_:
        migrations.CreateModel(
            name, [("id", models.BigAutoField(primary_key=True)), *fields]
        ).state_forwards("seedapp", project)
    return project.apps


def test_a_custom_field_gets_its_own_python_form_of_the_value() -> None:
    apps = _apps(
        ("Listing", [("tags", DelimitedList())]),
        ("Maybe", [("note", Refusing(null=True)), ("body", models.TextField())]),
        ("Never", [("note", Refusing())]),
    )
    with scratch_database(SOURCE) as scratch:
        with connections[scratch.alias].schema_editor() as editor:
            for model in apps.get_models():
                editor.create_model(model)
        result = top_up(apps, scratch.alias, 3)
        with connections[scratch.alias].cursor() as cursor:
            cursor.execute("SELECT tags FROM seedapp_listing")
            stored = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT count(*), count(note) FROM seedapp_maybe")
            maybe = cursor.fetchone()
        # The traffic's new rows too.
        from django_rollout.db.seed import new_row

        made = new_row(apps.get_model("seedapp", "Listing"), scratch.alias, 10)
        assert made is not None and isinstance(made.tags, list)
        made.save(using=scratch.alias, force_insert=True)
    assert result.inserted == {"seedapp_listing": 3, "seedapp_maybe": 3}
    assert len(stored) == 3 and all(isinstance(s, str) and s for s in stored)
    assert maybe == (3, 0)  # NULL where the field refuses every value but may be NULL
    assert result.skipped == {"seedapp_never": "`note`: Refusing refuses every synthetic value"}


def test_a_model_the_database_refuses_is_skipped_and_the_others_are_seeded() -> None:
    from django.db import transaction

    apps = _apps(
        ("Guarded", [("label", models.CharField(max_length=20))]),
        ("Open", [("label", models.CharField(max_length=20))]),
    )
    with scratch_database(SOURCE) as scratch:
        with connections[scratch.alias].schema_editor() as editor:
            for model in apps.get_models():
                editor.create_model(model)
        with connections[scratch.alias].cursor() as cursor:
            cursor.execute("ALTER TABLE seedapp_guarded ADD CONSTRAINT never CHECK (false)")
        # Inside a transaction too: the refused model must not abort the others' inserts.
        with transaction.atomic(using=scratch.alias):
            result = top_up(apps, scratch.alias, 3)
            Open = apps.get_model("seedapp", "Open")
            assert Open.objects.using(scratch.alias).count() == 3
    assert result.inserted == {"seedapp_open": 3}
    assert result.skipped["seedapp_guarded"].startswith("IntegrityError: ")
    assert 'violates check constraint "never"' in result.skipped["seedapp_guarded"]


def test_a_new_row_fills_a_required_field_whose_default_is_none() -> None:
    # django-pretix's Seat.seat_guid: CharField(default=None), NOT NULL. Code always sets
    # it; left to its default, every insert fails in every release, which is no finding.
    from django_rollout.db.seed import new_row

    apps = _apps(
        (
            "Seat",
            [
                ("guid", models.CharField(max_length=20, default=None)),
                ("note", models.CharField(max_length=20, null=True, default=None)),
                ("row", models.IntegerField(default=1)),
            ],
        )
    )
    Seat = apps.get_model("seedapp", "Seat")
    with scratch_database(SOURCE) as scratch:
        with connections[scratch.alias].schema_editor() as editor:
            editor.create_model(Seat)
        made = new_row(Seat, scratch.alias, 5)
        assert made is not None
        made.save(using=scratch.alias, force_insert=True)
        saved = Seat.objects.using(scratch.alias).get()
    assert saved.guid and saved.note is None and saved.row == 1
