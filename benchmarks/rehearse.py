"""Measure ``django-rollout rehearse`` on the example project against its targets.

From the issue "Rehearse the deploy on a real database", Measured:

* the time split into copy or seed, migrate, traffic and tracing (the report's ``timings_s``);
* tracing costs at most 5% of the rehearsal's wall time;
* the migrate part takes at most 2x a plain ``migrate`` of the same unit.

The anchor is Django's own ``call_command("migrate")`` of the whole history into an empty
PostgreSQL database, timed in-process around the command only (no start-up), median of
``--repeat`` fresh databases. The rehearsal's unit is the same history: with no S0 flag every
migration is its own deploy. Its ``migrate_s`` is the time inside ``apply_migration`` for the
unit's steps, less tracing; the anchor's database is empty, the rehearsal's holds ``--rows``
rows per model and serves old-code traffic, which is what the ratio measures.

    python benchmarks/rehearse.py [--rows 1000] [--repeat 3] [--adversarial]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust). Writes
``benchmarks/.work/rehearse.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLE = ROOT / "examples" / "shop"
WORK = HERE / ".work"

ANCHOR = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.core.management import call_command
began = time.perf_counter()
call_command("migrate", verbosity=0, interactive=False)
print(json.dumps({"migrate_s": time.perf_counter() - began}))
"""


def _env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    env["ROLLOUT_EXAMPLE_DB"] = database
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLE), str(ROOT / "src")) if p)
    return env


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def plain_migrate() -> float:
    """One plain ``migrate`` of the example's history into a new empty database."""
    name = f"rollout_bench_plain_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        proc = subprocess.run(
            [sys.executable, "-c", ANCHOR],
            cwd=EXAMPLE,
            env=_env(name),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"plain migrate failed:\n{proc.stderr[-3000:]}")
        return float(json.loads(proc.stdout.strip().splitlines()[-1])["migrate_s"])
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rehearsal(rows: int, adversarial: bool, traffic: bool = True) -> dict[str, Any]:
    """One rehearsal of the example with the console script; its JSON report."""
    out = WORK / "rehearse-report.json"
    args = [sys.executable, "-m", "django_rollout", "--settings", "shop.settings", "rehearse"]
    args += ["--rows", str(rows), "--format", "json", "-o", str(out)]
    if adversarial:
        args.append("--adversarial")
    if not traffic:
        args.append("--no-traffic")
    # the scratch database is created next to this one, which need not exist
    proc = subprocess.run(
        args, cwd=EXAMPLE, env=_env("rollout_bench_unused"), capture_output=True, text=True
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"rehearse exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per model (rehearse --rows)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure")
    parser.add_argument("--adversarial", action="store_true", help="rehearse --adversarial")
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)

    anchors = [plain_migrate() for _ in range(args.repeat)]
    runs = [rehearsal(args.rows, args.adversarial) for _ in range(args.repeat)]
    quiet = rehearsal(args.rows, args.adversarial, traffic=False)["timings_s"]
    timings = [r["timings_s"] for r in runs]
    anchor = statistics.median(anchors)

    def median(key: str) -> float:
        return statistics.median(float(t.get(key, 0.0)) for t in timings)

    total = median("total_s")
    split = {k: median(k) for k in ("s0_s", "seed_s", "migrate_s", "traffic_s", "tracing_s")}
    tracing_share = statistics.median(t["tracing_s"] / t["total_s"] for t in timings)
    migrate_ratio = statistics.median(t["migrate_s"] for t in timings) / anchor
    steps = len(runs[0].get("steps", []))
    confirmed = sum(1 for f in runs[0]["findings"] if f.get("confirmed"))

    print(f"example project: {steps} migrations rehearsed, --rows {args.rows}", file=sys.stderr)
    print(f"{'measure':34} {'median s':>9}  runs")
    print(f"{'plain migrate (anchor)':34} {anchor:9.2f}  {[round(a, 2) for a in anchors]}")
    print(f"{'rehearsal total':34} {total:9.2f}  {[round(t['total_s'], 2) for t in timings]}")
    for key, value in split.items():
        print(f"  {key:32} {value:9.2f}  ({value / total:5.1%} of total)")
    print()
    verdicts = [
        ("tracing / rehearsal wall time", tracing_share, "<=", 0.05),
        ("rehearsal migrate / plain migrate", migrate_ratio, "<=", 2.0),
    ]
    ok = True
    for label, value, op, target in verdicts:
        good = value <= target
        ok &= good
        print(f"{label:34} {value:9.3f}  {op} {target:<5} {'PASS' if good else 'FAIL'}")
    print(f"{'findings confirmed (first run)':34} {confirmed:9d}")
    # Info: the same rehearsal without traffic, to show what the traffic sessions cost the
    # migration (waits behind them, and their share of the machine's cores).
    print(f"{'migrate without traffic / plain':34} {quiet['migrate_s'] / anchor:9.3f}  (info)")
    (WORK / "rehearse.json").write_text(
        json.dumps(
            {
                "rows": args.rows,
                "adversarial": args.adversarial,
                "anchor_migrate_s": anchors,
                "timings_s": timings,
                "tracing_share": tracing_share,
                "migrate_ratio": migrate_ratio,
                "without_traffic_s": quiet,
            },
            indent=2,
        )
    )
    print("ALL TARGETS PASS" if ok else "SOME TARGETS FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
