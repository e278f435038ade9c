"""Synthetic rows in proportion to production's when S0 comes with row counts."""

from __future__ import annotations

import json
from pathlib import Path

from django_rollout.db.seed import scaled_rows
from django_rollout.graph.deployed import SNAPSHOT_FORMAT, SNAPSHOT_VERSION
from tests._project import Project, migration

TOKEN = """\
migrations.CreateModel(
    "Token",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.CharField(max_length=40)),
    ],
),
"""


def test_scaling_keeps_proportions_two_rows_for_a_small_table_and_none_for_an_empty_one() -> None:
    scaled = scaled_rows({"big": 4_000_000, "mid": 40_000, "small": 7, "one": 1, "empty": 0}, 1000)
    assert scaled.scale == 1000 / 4_000_000 and scaled.largest == 4_000_000
    assert scaled.rows == {"big": 1000, "mid": 10, "small": 2, "one": 1, "empty": 0}


def test_counts_under_the_cap_are_production_s_own() -> None:
    scaled = scaled_rows({"a": 300, "b": 5}, 1000)
    assert scaled.scale == 1.0 and scaled.rows == {"a": 300, "b": 5}
    assert scaled_rows({}, 10).rows == {}


def test_snapshot_row_counts_decide_how_many_rows_each_table_gets(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_note": migration(
                'migrations.AddField("token", "note", models.TextField(null=True))',
                '[("vault", "0001_initial")]',
            ),
        },
    )
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    project.configure(["vault"], database=sqlite)
    snapshot = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "applied": [["vault", "0001_initial"]],
        "tables": {"vault_token": 2_000_000, "auth_user": 3_000},
        "server": {},
    }
    (tmp_path / "deployed.json").write_text(json.dumps(snapshot), encoding="utf-8")
    result = project.run(
        "--settings",
        project.settings,
        "rehearse",
        "vault",
        "--applied-from",
        "deployed.json",
        "--max-rows",
        "400",
        "--no-traffic",
        "--format",
        "json",
    )
    assert result.status in (0, 1), result.stderr
    doc = result.json()
    assert doc["rows"]["scale"] == 400 / 2_000_000
    assert doc["rows"]["largest_in_production"] == 2_000_000
    # 400 rows for the table of two million, 2 (not 0.6) for the table of 3,000, and none
    # for the tables the snapshot does not name (contenttypes, auth's others).
    assert sum(s["seeded_rows"] for s in doc["steps"]) == 402
    with_rows = [s["migration"] for s in doc["steps"] if s["seeded_rows"]]
    assert with_rows[0] == doc["steps"][0]["migration"]  # vault_token was there from S0
