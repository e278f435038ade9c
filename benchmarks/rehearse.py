"""Measure ``django-rollout rehearse`` on the example project against its targets.

From the issue "Rehearse the deploy on a real database", Measured:

* the time split into copy or seed, migrate, traffic and tracing (the report's ``timings_s``);
* tracing costs at most 5% of the rehearsal's wall time;
* the migrate part takes at most 2x a plain ``migrate`` of the same unit.

The rehearsal's unit is the example's history: with no S0 flag every migration is its own
deploy. Its ``migrate_s`` is the time inside ``apply_migration`` for the unit's steps (a
failed attempt included), less tracing, over ``--rows`` rows per model, with old-code
traffic running. Two anchors, each on a fresh database, timed in-process (no start-up).
The measures run in ``--repeat`` rounds, one of each per round, and each ratio is the median
of the rounds' own ratios:

* fair: the same migrations in ``migrate``'s plan order, each with Django's
  ``MigrationExecutor.apply_migration`` carrying one state forward as ``migrate`` does, the
  unit's tables topped up before each step with the package's own seeding (untimed) to the
  same ``--rows``; no traffic, no tracing. A migration that fails on the seeded rows is
  timed, then brought forward as the rehearsal does (untimed). The ratio's target is
  against this anchor.
* empty: Django's own ``call_command("migrate")`` of the whole history into an empty
  database (the anchor of earlier sessions; no rows at all).

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

FAIR = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import ProjectState
from django_rollout.db.rehearse import Step, _operation_tables, _recover
from django_rollout.db.seed import top_up
from django_rollout.db.traffic import observe

unit = {tuple(key) for key in json.loads(sys.argv[1])}
rows = int(sys.argv[2])
executor = MigrationExecutor(connection)
plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
real_apps = frozenset(executor.loader.unmigrated_apps)
state = ProjectState(real_apps=set(real_apps))
state.apps  # render once, as migrate does; apply_migration advances it in place
applied, timed, failed = [], [], []
for migration, _ in plan:
    observed = (migration.app_label, migration.name) in unit
    if observed:
        top_up(state.apps, "default", rows)
        tables = _operation_tables(migration, state)
    began = time.perf_counter()
    try:
        state = executor.apply_migration(state, migration)
    except Exception as exc:
        if not observed:
            raise
        timed.append(time.perf_counter() - began)
        failed.append(f"{migration.app_label}.{migration.name}")
        step = Step(migration.app_label, migration.name, tables=tables)
        step.error = observe(exc)
        state = _recover(executor, applied, migration, step, real_apps)
        if state is None:
            break
    else:
        if observed:
            timed.append(time.perf_counter() - began)
    applied.append(migration)
print(json.dumps({"migrate_s": sum(timed), "steps": len(timed), "failed": failed}))
"""

# --profile: one rehearsal in-process, and a monitor session that samples what the migrating
# backend is doing (pg_stat_activity) every 5 ms while a step applies, plus the CPU time of
# the migrating thread. Client time is the migrating Python's (before the first statement of
# a step the backend is "idle", psycopg's BEGIN being lazy; between statements "idle in
# transaction"); what it did not spend on a CPU it spent waiting for one.
PROFILE = """
import collections, json, os, sys, threading, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
import psycopg
from django_rollout import api
from django_rollout.db import rehearse as walk
from django_rollout.db.traffic import backend_pid

states = collections.Counter()
cpu = [0.0]
now_pid = [None]
stop = threading.Event()
original = walk._apply

runq = collections.Counter()

def waited_ns(pid):
    # /proc/<pid>/schedstat: on a CPU, waiting on a run queue, timeslices (ns)
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0

def applying(executor, *args, **kwargs):
    now_pid[0] = backend_pid(executor.connection)
    where = {"client": f"self/task/{threading.get_native_id()}", "server": now_pid[0]}
    before = {k: waited_ns(v) for k, v in where.items()}
    began = time.thread_time()
    try:
        return original(executor, *args, **kwargs)
    finally:
        cpu[0] += time.thread_time() - began
        for k, v in where.items():  # a backend that went away mid-step reads 0: no wait
            runq[k] += max(0, waited_ns(v) - before[k]) / 1e9
        now_pid[0] = None

walk._apply = applying

def monitor():
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        last = time.perf_counter()
        while not stop.is_set():
            pid = now_pid[0]
            row = None
            if pid is not None:
                row = c.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE pid = %s", [pid]).fetchone()
            now = time.perf_counter()
            if row is not None and now_pid[0] == pid:
                state, kind, event = row
                states["active:" + (f"{kind}:{event}" if kind else "cpu")
                       if state == "active" else state] += now - last
            last = now
            stop.wait(0.005)

thread = threading.Thread(target=monitor, daemon=True)
thread.start()
options = api.RehearseOptions(rows=int(sys.argv[1]), traffic=sys.argv[2] == "traffic")
report = api.rehearse(options)
stop.set()
thread.join()
print(json.dumps({"timings_s": report.extra["timings_s"], "thread_cpu_s": cpu[0],
                  "states": dict(states), "runq_s": dict(runq)}))
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


def _in_new_database(prefix: str, what: str, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` against a new empty database; the JSON of its last line."""
    name = f"rollout_bench_{prefix}_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=EXAMPLE,
            env=_env(name),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
        doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return doc
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def plain_migrate() -> float:
    """One plain ``migrate`` of the example's history into a new empty database."""
    return float(_in_new_database("plain", "plain migrate", ANCHOR)["migrate_s"])


def fair_migrate(unit: list[list[str]], rows: int) -> dict[str, Any]:
    """The unit applied over the same seeded rows, one migration at a time; see the doc."""
    return _in_new_database("fair", "fair anchor", FAIR, json.dumps(unit), str(rows))


def profile(rows: int, traffic: bool) -> dict[str, Any]:
    """One rehearsal with the migrating backend's time sampled; see ``PROFILE``."""
    proc = subprocess.run(
        [sys.executable, "-c", PROFILE, str(rows), "traffic" if traffic else "quiet"],
        cwd=EXAMPLE,
        env=_env("rollout_bench_unused"),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"profile failed:\n{proc.stderr[-3000:]}")
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def _where(doc: dict[str, Any]) -> dict[str, float]:
    """Sort the sampled states of the migrating backend into where the time went."""
    out = dict.fromkeys(
        (
            "client: on a CPU",
            "client: waiting for a CPU",
            "server: running",
            "server: lock waits (behind traffic)",
            "server: WAL and I/O",
            "server: other waits",
        ),
        0.0,
    )
    client = 0.0
    for key, seconds in doc["states"].items():
        if key.startswith("idle"):
            client += seconds
        elif key == "active:cpu":
            out["server: running"] += seconds
        elif key.startswith("active:Lock:"):
            out["server: lock waits (behind traffic)"] += seconds
        elif key.startswith(("active:IO:", "active:LWLock:WAL")):
            out["server: WAL and I/O"] += seconds
        else:
            out["server: other waits"] += seconds
    out["client: on a CPU"] = min(doc["thread_cpu_s"], client)
    out["client: waiting for a CPU"] = client - out["client: on a CPU"]
    # read off the kernel's schedstat instead of sampled: the migrating thread's and its
    # backend's time on a run queue (the backend's shows within "server: running")
    out["run queue: migrating thread"] = doc["runq_s"].get("client", 0.0)
    out["run queue: its backend"] = doc["runq_s"].get("server", 0.0)
    return out


def _print_profile(rows: int) -> None:
    runs = {"with traffic": profile(rows, True), "--no-traffic": profile(rows, False)}
    print()
    print(f"where migrate_s goes (one run each, load {_load()}):")
    print(f"{'':38} " + " ".join(f"{label:>13}" for label in runs))
    wheres = {label: _where(doc) for label, doc in runs.items()}
    rows_out = {"migrate_s": {k: d["timings_s"]["migrate_s"] for k, d in runs.items()}}
    for key in next(iter(wheres.values())):
        rows_out[f"  {key}"] = {label: where[key] for label, where in wheres.items()}
    for name, values in rows_out.items():
        print(f"{name:38} " + " ".join(f"{values[label]:13.2f}" for label in runs))


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


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


def _waited_s(report: dict[str, Any], key: str) -> float:
    """One rehearsal's sum of a statement wait (``traffic_wait_ms``, ``lock_wait_ms``), s."""
    statements = (st for step in report["steps"] for st in step["statements"])
    return sum(st.get(key) or 0.0 for st in statements) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per model (rehearse --rows)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure")
    parser.add_argument("--adversarial", action="store_true", help="rehearse --adversarial")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also: where the migrate part's time goes, with and without traffic",
    )
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)
    loads = {"start": _load()}

    # In rounds, one of each measure per round, and the ratios taken within a round: on a
    # shared host the same command's time drifts by a third within minutes, and a batch of
    # rehearsals followed by a batch of anchors would read that drift as the ratio.
    runs: list[dict[str, Any]] = []
    quiet_runs: list[dict[str, Any]] = []
    fairs: list[dict[str, Any]] = []
    empties: list[float] = []
    for round_number in range(1, args.repeat + 1):
        runs.append(rehearsal(args.rows, args.adversarial))
        quiet_runs.append(rehearsal(args.rows, args.adversarial, traffic=False)["timings_s"])
        fairs.append(fair_migrate(runs[0]["unit"], args.rows))
        empties.append(plain_migrate())
        loads[f"after round {round_number}"] = _load()
    timings = [r["timings_s"] for r in runs]
    with_traffic = [t["migrate_s"] for t in timings]
    without_traffic = [t["migrate_s"] for t in quiet_runs]
    fair_of = [f["migrate_s"] for f in fairs]
    fair = statistics.median(fair_of)
    empty = statistics.median(empties)

    def median(key: str) -> float:
        return statistics.median(float(t.get(key, 0.0)) for t in timings)

    total = median("total_s")
    split = {k: median(k) for k in ("s0_s", "seed_s", "migrate_s", "traffic_s", "tracing_s")}
    tracing_share = statistics.median(t["tracing_s"] / t["total_s"] for t in timings)
    migrate = statistics.median(with_traffic)
    quiet = statistics.median(without_traffic)
    steps = len(runs[0].get("steps", []))
    confirmed = sum(1 for f in runs[0]["findings"] if f.get("confirmed"))
    failed = [f"{s['app_label']}.{s['migration']}" for s in runs[0]["steps"] if s["error"]]

    # Time traffic spent blocked by the migrating session: a deadlock shows as about one
    # deadlock_timeout (1 s), and it explains most of the swing of migrate_s between runs.
    blocked = [_waited_s(r, "traffic_wait_ms") for r in runs]

    # And the migrating session blocked by traffic: the migration queued behind the
    # application's transactions, as it would in production (the fair anchor has none).
    queued = [_waited_s(r, "lock_wait_ms") for r in runs]

    def runs_of(values: list[float]) -> str:
        return str([round(v, 2) for v in values])

    print(f"example project: {steps} migrations rehearsed, --rows {args.rows}", file=sys.stderr)
    print(f"failed on the seeded rows: rehearsal {failed}, fair anchor {fairs[0]['failed']}")
    print(f"{'measure':38} {'median s':>9}  runs")
    rows_of = {
        "rehearsal total": (total, [t["total_s"] for t in timings]),
        **{f"  {k}": (v, [t[k] for t in timings]) for k, v in split.items()},
        "migrate_s, with traffic": (migrate, with_traffic),
        "  traffic blocked by the migration": (statistics.median(blocked), blocked),
        "  the migration blocked by traffic": (statistics.median(queued), queued),
        "migrate_s, --no-traffic": (quiet, without_traffic),
        "fair anchor (same rows, no traffic)": (fair, fair_of),
        "empty anchor (plain migrate, no rows)": (empty, empties),
    }
    for label, (value, values) in rows_of.items():
        share = f"  ({value / total:5.1%} of total)" if label[2:] in split else ""
        print(f"{label:38} {value:9.2f}  {runs_of(values)}{share}")
    print()
    print("ratios against the fair anchor (the median of each round's own ratio):")

    def per_round(values: list[float]) -> float:
        return float(statistics.median(v / a for v, a in zip(values, fair_of, strict=True)))

    less_queued = [m - q for m, q in zip(with_traffic, queued, strict=True)]
    ratios = {
        "with traffic": per_round(with_traffic),
        "--no-traffic": per_round(without_traffic),
        "empty anchor": per_round(empties),
    }
    for label, value in ratios.items():
        print(f"  {label:36} {value:9.3f}")
    old_ratio = statistics.median(m / e for m, e in zip(with_traffic, empties, strict=True))
    print(f"  {'(with traffic / empty anchor)':36} {old_ratio:9.3f}  (the old ratio)")
    print(
        f"  {'(with traffic, less its lock waits)':36} {per_round(less_queued):9.3f}"
        "  (info: the part that is not production's own queueing)"
    )
    each = ", ".join(f"{m / a:.2f}" for m, a in zip(with_traffic, fair_of, strict=True))
    print(f"  {'with traffic, round by round':36} {each}")
    print()
    verdicts = [
        ("tracing / rehearsal wall time", tracing_share, "<=", 0.05),
        ("rehearsal migrate / fair anchor", ratios["with traffic"], "<=", 2.0),
    ]
    ok = True
    for label, value, op, target in verdicts:
        good = value <= target
        ok &= good
        print(f"{label:38} {value:9.3f}  {op} {target:<5} {'PASS' if good else 'FAIL'}")
    print(f"{'findings confirmed (first run)':38} {confirmed:9d}")
    print("load average (1, 5, 15 min): " + "; ".join(f"{k}: {v}" for k, v in loads.items()))
    (WORK / "rehearse.json").write_text(
        json.dumps(
            {
                "rows": args.rows,
                "adversarial": args.adversarial,
                "fair_anchor": fairs,
                "empty_anchor_migrate_s": empties,
                "timings_s": timings,
                "without_traffic_s": quiet_runs,
                "tracing_share": tracing_share,
                "ratios": ratios,
                "load": loads,
            },
            indent=2,
        )
    )
    if args.profile:
        _print_profile(args.rows)
    print("ALL TARGETS PASS" if ok else "SOME TARGETS FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
