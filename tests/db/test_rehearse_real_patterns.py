"""`rehearse` on patterns met in real projects (first seen rehearsing django-oscar 4.2).

A model moved to another app the way Django documents it (the new app takes it over in
state only, then renames its table; the old app drops it from state later) leaves the old
app's model in the state, naming a table that is gone, for the migrations in between. A
rehearsal must walk through such a history, and neither seed nor run traffic on a table
that does not exist. An application whose ``save()`` turns synthetic rows down is the
application at work, not the deploy failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._project import Project, judged_after_initial, migration, pg_settings

FIELDS = """[
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.CharField(max_length=40)),
    ]"""
TOKEN = f'migrations.CreateModel("Token", {FIELDS})'
# The moved model points at users: the old release deleting a user cascades to it.
OWNED = FIELDS[:-6] + '("owner", models.ForeignKey("auth.user", models.CASCADE, null=True)),\n    ]'
AUTH = '("auth", "0012_alter_user_first_name_max_length")'
TAKE_OVER = (
    "migrations.SeparateDatabaseAndState(state_operations=["
    f'migrations.CreateModel("Token", {OWNED}, options={{"db_table": "vault_token"}})])'
)
RENAME = 'migrations.AlterModelTable("token", None)'
LET_GO = 'migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel("Token")])'
LATER = 'migrations.AddField("token", "note", models.TextField(null=True))'


def _moved(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(f'migrations.CreateModel("Token", {OWNED})', f"[{AUTH}]"),
            "0002_let_go": migration(
                LET_GO, '[("vault", "0001_initial"), ("store", "0002_rename")]'
            ),
        },
    )
    project.app(
        "store",
        {
            "0001_take_over": migration(TAKE_OVER, '[("vault", "0001_initial")]'),
            "0002_rename": migration(RENAME, '[("store", "0001_take_over")]'),
            "0003_later": migration(LATER, '[("store", "0002_rename")]'),
        },
    )
    project.configure(
        ["vault", "store"],
        database=pg_settings(),
        extra=judged_after_initial("vault"),
    )
    return project


def _vault(tmp_path: Path, initial: str, name: str, second: str, models: str = "") -> Project:
    """One app, ``vault``: its initial migration deployed, ``name`` judged."""
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(initial),
            name: migration(second, '[("vault", "0001_initial")]'),
        },
        models=models,
    )
    project.configure(["vault"], database=pg_settings(), extra=judged_after_initial("vault"))
    return project


def _finding(doc: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [f for f in doc["findings"] if f["rule"] == rule]
    return found


def _rehearse(project: Project, *args: str) -> dict[str, Any]:
    result = project.run(
        "--settings", project.settings, "rehearse", "--rows", "20", "--format", "json", *args
    )
    assert result.status in (0, 1), result.stderr
    doc: dict[str, Any] = result.json()
    return doc


def test_walks_through_a_model_moved_between_apps(tmp_path: Path) -> None:
    doc = _rehearse(_moved(tmp_path))
    steps = {(s["app_label"], s["migration"]): s for s in doc["steps"]}
    assert set(steps) == {
        ("store", "0001_take_over"),
        ("store", "0002_rename"),
        ("vault", "0002_let_go"),
        ("store", "0003_later"),
    }
    assert all(s["status"] == "applied" for s in steps.values()), doc["steps"]
    # The old release of the rename still has the old table's name: that is the hazard
    # the rename is (C104), and the only table nothing can be found at.
    missing = [f for f in doc["findings"] if "does not exist" in (f.get("observed_error") or "")]
    assert missing and all(f["rule"] == "C104" for f in missing), missing
    assert all(f["migration"] == "0002_rename" for f in missing)
    # Where the state keeps vault.Token after the rename, it is neither seeded nor driven.
    assert doc["unseeded_tables"].get("vault_token", "").startswith("no table")
    assert not [f for f in doc["findings"] if f["rule"] is None], doc["findings"]


M2M = """migrations.CreateModel(
    "Tag",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("label", models.CharField(max_length=20)),
    ],
),
migrations.CreateModel(
    "Token",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("tags", models.ManyToManyField("vault.tag")),
    ],
),
"""
ALTER_M2M = (
    'migrations.AlterField("token", "tags", models.ManyToManyField("vault.tag", blank=True))'
)


def test_adversarial_rows_leave_an_altered_many_to_many_alone(tmp_path: Path) -> None:
    project = _vault(tmp_path, M2M, "0002_blank", ALTER_M2M)
    doc = _rehearse(project, "--adversarial")
    [step] = doc["steps"]
    # blank is a form's matter: no row can break it, and none is planted
    assert step["status"] == "applied" and not step["adversarial_rows"]
    assert doc["verdict"] == "safe", doc["findings"]


GUARDED = """
class Token(models.Model):
    name = models.CharField(max_length=40)

    def save(self, *args, **kwargs):
        if not self.name.startswith("ok"):
            raise ValueError("names start with ok")  # what the application's forms ensure
        super().save(*args, **kwargs)
"""
GUARDED_0002 = 'migrations.AlterField("token", "name", models.CharField(max_length=40))'


def test_new_code_turning_down_a_synthetic_row_is_counted_not_reported(tmp_path: Path) -> None:
    project = _vault(tmp_path, TOKEN, "0002_same", GUARDED_0002, models=GUARDED)
    doc = _rehearse(project)
    assert doc["traffic"]["refused"].get("new", 0) >= 1
    assert not [f for f in doc["findings"] if f["rule"] is None], doc["findings"]
    assert doc["verdict"] == "safe"


def test_new_code_failing_in_the_database_is_still_reported(tmp_path: Path) -> None:
    # The same save(), but the migration drops a column the new models still have (a model
    # edited without its migration): the database's error, not the application's check.
    stale = GUARDED.replace(
        "max_length=40)", "max_length=40)\n    note = models.TextField(null=True)"
    )
    with_note = TOKEN.replace(FIELDS, FIELDS[:-6] + '("note", models.TextField(null=True)),\n    ]')
    drop = 'migrations.RemoveField("token", "note")'
    project = _vault(tmp_path, with_note, "0002_drop", drop, models=stale)
    doc = _rehearse(project)
    # Its reads fail in the database (C102 explains them): failures, not refusals.
    assert doc["traffic"]["errors"].get("new", 0) >= 1
    assert _finding(doc, "C102")["confirmed"] is True


IMAGES = """migrations.CreateModel(
    "Image",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("token", models.ForeignKey("vault.token", models.CASCADE)),
        ("position", models.PositiveIntegerField(default=0)),
    ],
    options={"unique_together": {("token", "position")}},
)"""


def test_traffic_keeps_a_unique_set_with_a_default_member_unique(tmp_path: Path) -> None:
    # Each token's images are unique by position, which code leaves at 0 for the first
    # one (django-oscar's product images): the harness picks the tokens, so it must not
    # give two images of one token position 0 and report the collision as the deploy's.
    doc = _rehearse(_vault(tmp_path, TOKEN, "0002_images", IMAGES))
    assert doc["traffic"]["actions"]["new"] > 0
    assert not [f for f in doc["findings"] if f["rule"] is None], doc["findings"]
    assert doc["verdict"] == "safe"


STAMP = """migrations.CreateModel(
    "Stamp",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("token", models.ForeignKey("vault.token", models.CASCADE)),
    ],
)"""


def _renamed(tmp_path: Path, old: str, new: str, *later: str) -> dict[str, Any]:
    """Rehearse ``vault``: a Token ordered by ``old``, which ``0002_rename`` renames to
    ``new``; ``later`` operations follow in ``0003_later``. Deleting a user cascades to its
    tokens and on to their stamps: the ORM reads the tokens first, in their ordering."""
    field = OWNED[:-6] + f'("{old}", models.IntegerField(default=0)),\n    ]'
    ordered = f'migrations.CreateModel("Token", {field}, options={{"ordering": ["-{old}"]}})'
    rename = f'migrations.RenameField("token", "{old}", "{new}")'
    steps = {"0001_initial": migration(f"{ordered},\n{STAMP}", f"[{AUTH}]")}
    steps["0002_rename"] = migration(rename, '[("vault", "0001_initial")]')
    if later:
        steps["0003_later"] = migration("\n".join(later), '[("vault", "0002_rename")]')
    project = Project(tmp_path)
    project.app(
        "vault",
        steps,
        models=(
            "class Token(models.Model):\n"
            "    name = models.CharField(max_length=40)\n"
            '    owner = models.ForeignKey("auth.user", models.CASCADE, null=True)\n'
            f"    {new} = models.IntegerField(default=0)\n\n"
            "    class Meta:\n"
            f'        ordering = ["-{new}"]\n\n\n'
            "class Stamp(models.Model):\n"
            '    token = models.ForeignKey("vault.token", models.CASCADE)\n'
        ),
    )
    project.configure(["vault"], database=pg_settings(), extra=judged_after_initial("vault"))
    return _rehearse(project)


def _unexplained(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["migration"], f["message"]) for f in doc["findings"] if f["rule"] is None]


def test_a_stale_ordering_in_the_migration_state_is_not_the_deploys(tmp_path: Path) -> None:
    # Django's RenameField leaves Meta.ordering naming the old field (django-oscar's
    # address.0002, mended by 0003's AlterModelOptions): the historical model between them
    # raises FieldError before any SQL. The release that served then never had that model.
    doc = _renamed(tmp_path, "hits", "uses", 'migrations.AlterModelOptions("token", {})')
    assert all(s["status"] == "applied" for s in doc["steps"]), doc["steps"]
    assert not _unexplained(doc)
    assert doc["traffic"]["refused"].get("old", 0) >= 1, doc["traffic"]
    assert _finding(doc, "C103")["confirmed"]


def test_a_renamed_column_named_count_is_read_as_an_aggregate(tmp_path: Path) -> None:
    # PostgreSQL reads `vault_token.count`, once no such column exists, as count(vault_token):
    # the old release's SELECT fails with 42803, not 42703. It is still the rename's (C103).
    doc = _renamed(tmp_path, "count", "uses")
    assert not _unexplained(doc)
    c103 = _finding(doc, "C103")
    assert c103["confirmed"] and c103["code_version"] == "old", c103
    assert "42803" in c103["observed_error"] or "42703" in c103["observed_error"]
