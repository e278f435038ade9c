"""The example shop (examples/shop): a valid Django project and an honest fixture.

* its models and migrations agree (`makemigrations --check`);
* its whole history applies to a fresh, empty PostgreSQL database;
* its manifest (expected.json) is well-formed and covers the catalogue;
* the hazards it seeds really break on rows: PostgreSQL's own errors, no mocks.

The Django project runs in subprocesses (cwd examples/shop), so this module never configures
Django in the test process.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop"
MANIFEST = EXAMPLE / "expected.json"
APPS = ("catalog", "customers", "orders", "billing", "settings_store")
PG_HOST = os.environ.get("ROLLOUT_EXAMPLE_HOST", "127.0.0.1")

RULE_ID = re.compile(r"^[CDLMHA][0-9]{3}$")
# The rules the example must account for: seeded in a migration, seen at start-up, or listed
# under not_in_example with the reason (L306 is info-level and appears in "info" lists).
MUST_COVER = (
    {f"C10{i}" for i in range(1, 10)}
    | {f"D20{i}" for i in range(1, 8)}
    | {f"L30{i}" for i in range(1, 9)}
    | {"M401", "M402", "M404", "M405", "M406", "M407", "A601"}
)


# --------------------------------------------------------------------------- helpers


def manage(*args: str, db: str = "rollout_example_unused") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    env["ROLLOUT_EXAMPLE_DB"] = db
    env["ROLLOUT_EXAMPLE_HOST"] = PG_HOST
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(EXAMPLE), str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def migrate(db: str, *target: str) -> None:
    result = manage("migrate", *target, "--no-input", db=db)
    assert result.returncode == 0, output(result)


def admin_connection() -> Any:
    try:
        return psycopg.connect(host=PG_HOST, user="postgres", dbname="postgres", autocommit=True)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment without PostgreSQL
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}: {exc}")


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A new, empty database with a unique name, dropped afterwards."""
    name = f"rollout_example_test_{uuid.uuid4().hex[:12]}"
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connect(db: str) -> Any:
    return psycopg.connect(host=PG_HOST, user="postgres", dbname=db, autocommit=True)


def migration_names() -> dict[str, set[str]]:
    return {
        app: {p.stem for p in (EXAMPLE / app / "migrations").glob("[0-9][0-9][0-9][0-9]_*.py")}
        for app in APPS
    }


def load_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def insert_customer(conn: Any, email: str = "ada@example.com") -> int:
    """A user and a customer, with the columns every release of the history has."""
    user_id = conn.execute(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name,"
        " email, is_staff, is_active, date_joined)"
        " VALUES ('!', false, %s, '', '', %s, false, true, now()) RETURNING id",
        [email, email],
    ).fetchone()[0]
    return conn.execute(
        "INSERT INTO customers_customer (user_id, email, phone, fax_number, country, created_at)"
        " VALUES (%s, %s, '', '', 'GB', now()) RETURNING id",
        [user_id, email],
    ).fetchone()[0]


# --------------------------------------------------------------------------- the project


def test_models_and_migrations_agree() -> None:
    result = manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, output(result)
    assert "No changes detected" in result.stdout, output(result)


def test_whole_history_applies_to_an_empty_database(fresh_db: str) -> None:
    migrate(fresh_db)
    result = manage("migrate", "--check", db=fresh_db)
    assert result.returncode == 0, output(result)

    listing = manage("showmigrations", "--list", *APPS, db=fresh_db)
    assert listing.returncode == 0, output(listing)
    assert "[ ]" not in listing.stdout, listing.stdout
    applied = sum(1 for line in listing.stdout.splitlines() if "[X]" in line)
    assert applied == sum(len(names) for names in migration_names().values())


# --------------------------------------------------------------------------- the manifest


def test_manifest_is_well_formed() -> None:
    manifest = load_manifest()
    names = migration_names()
    assert manifest["mode"] == "each migration against the state just before it"

    sections: dict[str, set[tuple[str, str]]] = {}
    for section in ("baseline", "hazards", "safe", "suppressed"):
        entries = manifest[section]
        keys = [(e["app_label"], e["migration"]) for e in entries]
        assert len(keys) == len(set(keys)), f"duplicate entries in {section}"
        for app, migration in keys:
            assert migration in names.get(app, set()), f"{section}: no {app}.{migration}"
        sections[section] = set(keys)

    for a in sections:
        for b in sections:
            if a < b:
                assert not sections[a] & sections[b], f"{a} and {b} overlap"

    # Complete: every migration of the example is baseline, hazard, safe or suppressed.
    every = {(app, name) for app, app_names in names.items() for name in app_names}
    assert set().union(*sections.values()) == every

    for entry in manifest["hazards"]:
        assert entry["rules"], entry
        assert entry["story"].strip(), entry
    for entry in manifest["safe"]:
        assert "rules" not in entry, entry
        assert entry["story"].strip(), entry
    for entry in manifest["suppressed"]:
        assert entry["rules"], entry

    ids: set[str] = set(manifest["startup"])
    for entry in manifest["hazards"] + manifest["safe"] + manifest["suppressed"]:
        for key in ("rules", "info", "must_not", "twin_of"):
            ids.update(entry.get(key, []))
    ids.update(e["rule"] for e in manifest["not_in_example"])
    bad = sorted(i for i in ids if not RULE_ID.match(i))
    assert not bad, bad

    for entry in manifest["hazards"]:
        assert not set(entry["rules"]) & set(entry.get("must_not", [])), entry
    for entry in manifest["not_in_example"]:
        assert entry["why"].strip(), entry

    covered = set(manifest["startup"]) | {e["rule"] for e in manifest["not_in_example"]}
    for entry in manifest["hazards"] + manifest["suppressed"]:
        covered.update(entry["rules"])
    for entry in manifest["hazards"] + manifest["safe"]:
        covered.update(entry.get("info", []))
    assert not MUST_COVER - covered, sorted(MUST_COVER - covered)


def test_settings_baseline_and_suppression_match_the_manifest() -> None:
    settings_tree = ast.parse((EXAMPLE / "shop" / "settings.py").read_text())
    rollout = next(
        ast.literal_eval(node.value)
        for node in settings_tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "ROLLOUT" for t in node.targets)
    )
    start_after = rollout["start_after"]

    import django

    contrib = Path(django.__file__).parent / "contrib"
    for app in ("admin", "auth", "contenttypes", "sessions"):
        assert (contrib / app / "migrations" / f"{start_after[app]}.py").exists(), app
    manifest = load_manifest()
    baseline = {e["app_label"]: e["migration"] for e in manifest["baseline"]}
    assert {a: m for a, m in start_after.items() if a in APPS} == baseline

    for entry in manifest["suppressed"]:
        path = EXAMPLE / entry["app_label"] / "migrations" / f"{entry['migration']}.py"
        tree = ast.parse(path.read_text())
        migration_class = next(
            n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Migration"
        )
        ignore = next(
            ast.literal_eval(n.value)
            for n in migration_class.body
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "rollout_ignore" for t in n.targets)
        )
        assert set(ignore) == set(entry["rules"])
        assert all(len(reason) > 20 for reason in ignore.values()), ignore


# --------------------------------------------------------------------------- hazards on rows


def test_d201_unique_blank_column_fails_on_two_rows(fresh_db: str) -> None:
    """django-oauth-toolkit 3.0.0: CharField(unique=True, blank=True) added to a table with
    rows gets '' on every row, and the unique index cannot be built."""
    migrate(fresh_db, "auth")
    migrate(fresh_db, "customers", "0002_apitoken")
    with connect(fresh_db) as conn:
        customer = insert_customer(conn)
        for name, key in (("shopify", "k" * 40), ("amazon", "m" * 40)):
            conn.execute(
                "INSERT INTO customers_apitoken (customer_id, name, key, created_at)"
                " VALUES (%s, %s, %s, now())",
                [customer, name, key],
            )

    result = manage("migrate", "customers", "0003_apitoken_token_checksum", db=fresh_db)
    assert result.returncode != 0, output(result)
    assert "could not create unique index" in result.stderr, output(result)
    assert "token_checksum" in result.stderr, output(result)
    with connect(fresh_db) as conn:
        recorded = conn.execute(
            "SELECT count(*) FROM django_migrations"
            " WHERE app = 'customers' AND name = '0003_apitoken_token_checksum'"
        ).fetchone()[0]
        assert recorded == 0


OLD_RELEASE_PRODUCT_INSERT = (
    # What the release before catalog.0002 inserts: it does not know weight_grams.
    "INSERT INTO catalog_product (category_id, name, slug, description, price, stock,"
    " is_active, legacy_sku, meta_title, created_at, updated_at)"
    " VALUES (NULL, %s, %s, '', 9.90, 3, true, '', '', now(), now())"
)


def test_c101_old_release_insert_fails_and_db_default_twin_accepts_it(fresh_db: str) -> None:
    migrate(fresh_db, "auth")
    migrate(fresh_db, "catalog", "0002_product_weight_grams")
    with connect(fresh_db) as conn:
        with pytest.raises(psycopg.errors.NotNullViolation) as excinfo:
            conn.execute(OLD_RELEASE_PRODUCT_INSERT, ["Mug", "mug"])
        assert excinfo.value.diag.column_name == "weight_grams"

    migrate(fresh_db, "catalog", "0003_alter_product_weight_grams_db_default")
    with connect(fresh_db) as conn:
        conn.execute(OLD_RELEASE_PRODUCT_INSERT, ["Mug", "mug"])
        weight = conn.execute(
            "SELECT weight_grams FROM catalog_product WHERE slug = 'mug'"
        ).fetchone()[0]
        assert weight == 0

    # The other twin, AddField with db_default from the start (catalog.0013): the release
    # before it inserts without is_featured and the database fills it in.
    migrate(fresh_db, "catalog", "0013_product_is_featured")
    with connect(fresh_db) as conn:
        category = conn.execute(
            "INSERT INTO catalog_category (name, slug, sort_order)"
            " VALUES ('Kitchen', 'kitchen', 1) RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO catalog_product (category_id, name, slug, description, price, stock,"
            " weight_grams, is_active, meta_title, created_at, updated_at)"
            " VALUES (%s, 'Teapot', 'teapot', '', 25, 1, 900, true, '', now(), now())",
            [category],
        )
        featured = conn.execute(
            "SELECT is_featured FROM catalog_product WHERE slug = 'teapot'"
        ).fetchone()[0]
        assert featured is False


def test_m405_rows_written_then_table_altered_fails_only_with_rows(fresh_db: str) -> None:
    """billing.0010 passes on an empty database (see the whole-history test) and fails once
    it has invoices to insert: the deferred FK checks are still pending at ALTER TABLE."""
    migrate(fresh_db, "auth")
    migrate(fresh_db, "billing", "0009_alter_payment_provider_ref")
    with connect(fresh_db) as conn:
        user_id = conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name,"
            " email, is_staff, is_active, date_joined)"
            " VALUES ('!', false, 'ada', '', '', '', false, true, now()) RETURNING id"
        ).fetchone()[0]
        customer = conn.execute(
            "INSERT INTO customers_customer (user_id, email, phone, country, created_at,"
            " referral_code) VALUES (%s, 'ada@example.com', '', 'GB', now(), 'ADA123')"
            " RETURNING id",
            [user_id],
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO orders_order (customer_id, status, currency, total, customer_note,"
            " placed_at, created_at) VALUES (%s, 'paid', 'EUR', 42, '', now(), now())",
            [customer],
        )

    result = manage("migrate", "billing", "0010_invoice_one_per_order", db=fresh_db)
    assert result.returncode != 0, output(result)
    assert "pending trigger events" in result.stderr, output(result)


def test_d205_copy_collides_with_startup_defaults(fresh_db: str) -> None:
    """The constance story: `migrate` itself starts Django, AppConfig.ready() creates the
    default settings, then the plain bulk_create copy of the legacy table collides."""
    migrate(fresh_db, "settings_store", "0002_setting")
    with connect(fresh_db) as conn:
        conn.execute(
            "INSERT INTO settings_store_config (key, value) VALUES ('SHOP_NAME', '\"Old shop\"')"
        )

    result = manage("migrate", "settings_store", "0003_copy_config_to_setting", db=fresh_db)
    assert result.returncode != 0, output(result)
    assert "duplicate key value violates unique constraint" in result.stderr, output(result)
    assert "SHOP_NAME" in result.stderr, output(result)

    # The idempotent twin (0004) does not care what start-up already wrote.
    with connect(fresh_db) as conn:
        conn.execute(
            "INSERT INTO django_migrations (app, name, applied)"
            " VALUES ('settings_store', '0003_copy_config_to_setting', now())"
        )
    migrate(fresh_db, "settings_store", "0004_recopy_config_to_setting")
    with connect(fresh_db) as conn:
        value = conn.execute(
            "SELECT value FROM settings_store_setting WHERE key = 'SHOP_NAME'"
        ).fetchone()[0]
        assert value == "Example Shop"


SQL_CARRIED_FORWARD = """
import django
django.setup()
from django.db.migrations.state import ProjectState
from django_rollout import api
from django_rollout.graph.deployed import EACH
from django_rollout.graph.loader import load_graph
from django_rollout.graph.sql import collect_migration_sql

graph = load_graph()
carried = api._collect_sql(graph, EACH, graph.plan, "postgresql", (17,))
mismatches = 0
for i, (migration, got) in enumerate(zip(graph.plan, carried)):
    state = ProjectState(real_apps=set(graph.loader.unmigrated_apps))
    for done in graph.plan[:i]:
        done.mutate_state(state, preserve=False)
    alone = collect_migration_sql(migration, state, vendor="postgresql", server_version=(17,))
    if (alone.statements, alone.error) != (got.statements, got.error):
        mismatches += 1
        print("MISMATCH", migration.app_label, migration.name)
print("compared", len(carried), "mismatches", mismatches)
"""


def test_sql_carried_forward_equals_each_migration_collected_alone() -> None:
    """`--sql` advances one rendered state through the plan, as Django's collect_sql does;
    every migration's statements equal those collected on a state built for it alone."""
    result = manage("shell", "-c", SQL_CARRIED_FORWARD)
    assert result.returncode == 0, output(result)
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"compared \d+ mismatches 0", last), output(result)
    assert int(last.split()[1]) >= 50, output(result)
