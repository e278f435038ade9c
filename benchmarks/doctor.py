"""Measure ``django-rollout doctor`` on a database of 500+ tables and 3,000+ migrations.

From the issue: "``doctor`` on a database with 500 tables and 3,000 recorded migrations
finishes in under 10 s on these machines". Target: CLI wall time / 10 s <= 1.0.

The project is ``synthetic.write_project(apps=58, per_app=52, seed=2024)`` in
``benchmarks/.work/doctor_synthetic``: 3,016 generated migrations, 3,034 recorded with
Django's contrib apps; 515 models, 525 tables in the migrated database with contrib's
(the generator writes no many-to-many field, so no through table). The tables and rows are
counted in the database at every run and printed.

The database is built by a real ``manage.py migrate`` of the whole history into a fresh
PostgreSQL database. That takes minutes, so it is kept as a template database named from a
hash of the generator's parameters, Django's version and the generated migrations' contents
(``rollout_bench_doctor_<hash>``); every run copies it with ``CREATE DATABASE ... TEMPLATE``
into ``rollout_bench_doctor_run`` and measures there.

Measures, each a median of ``--repeat`` runs after one unmeasured warm-up:

* the CLI as a user runs it: ``django-rollout --settings synth_project.settings doctor
  --database default --format json``, wall time of the subprocess, Django's start-up included;
* in-process: ``api.doctor(DoctorOptions(database="default"))`` after ``django.setup()``,
  each in a fresh interpreter.

On a database the real ``migrate`` built, doctor must report no H5xx finding at warning or
error: any is printed as ``FALSE ALARMS`` and the exit status is 1 (as for a missed target).
Until ``django_rollout.api.doctor`` exists, the project and database are still built, then
one line says doctor is not available and the exit status is 2.

    python benchmarks/doctor.py [--repeat 3] [--profile] [--regenerate] [--rebuild] [--keep]

``--profile`` runs the in-process doctor once under pyinstrument and writes
``benchmarks/.work/profile-doctor.html``. Results go to ``benchmarks/.work/doctor.json``.
Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust). The load average is recorded
with every timing: the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
PROJECT_DIR = WORK / "doctor_synthetic"
VENV = Path(os.environ.get("ROLLOUT_BENCH_VENV", "/work/venv"))
SETTINGS = "synth_project.settings"
APPS, PER_APP, SEED = 58, 52, 2024
WORKING_DB = "rollout_bench_doctor_run"
TARGET_S = 10.0
SLOW_MIGRATE_S = 15 * 60
FALSE_ALARM_PREFIX = "H5"  # doctor's rules: H501..H505 and any later one

sys.path.insert(0, str(HERE))
import synthetic  # noqa: E402

IN_PROCESS = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
began = time.perf_counter()
import django
django.setup()
set_up = time.perf_counter()
try:
    from django_rollout.api import DoctorOptions, doctor
except ImportError as exc:
    print(json.dumps({"unavailable": f"{type(exc).__name__}: {exc}"}))
    raise SystemExit(0)
profile = sys.argv[1] if len(sys.argv) > 1 else ""
if profile:
    from pyinstrument import Profiler
    profiler = Profiler()
    profiler.start()
start = time.perf_counter()
report = doctor(DoctorOptions(database="default"))
done = time.perf_counter()
if profile:
    profiler.stop()
    with open(profile, "w") as fh:
        fh.write(profiler.output_html())
repair = report.extra.get("repair") or []
print(json.dumps({
    "setup_s": set_up - began,
    "doctor_s": done - start,
    "findings": [{"rule": f.rule, "severity": str(f.severity), "message": f.message}
                 for f in report.findings],
    "repair": len(repair),
}))
"""


@dataclass
class Sample:
    wall: float
    load: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)


def _load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _psql(sql: str, database: str = "postgres") -> str:
    proc = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-qAtc", sql],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"psql failed on {sql!r}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _exists(database: str) -> bool:
    return _psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'") == "1"


def _env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ROLLOUT_BENCH_DB"] = database
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["NO_COLOR"] = "1"
    return env


def ensure_project(regenerate: bool) -> None:
    """Write the project unless the one on disk came from the same parameters."""
    marker = PROJECT_DIR / "GENERATED"
    expected = f"apps={APPS} per_app={PER_APP} seed={SEED} "
    if not regenerate and marker.exists() and marker.read_text().startswith(expected):
        return
    began = time.perf_counter()
    total = synthetic.write_project(PROJECT_DIR, apps=APPS, per_app=PER_APP, seed=SEED)
    took = time.perf_counter() - began
    print(f"wrote {total} migrations in {APPS} apps to {PROJECT_DIR} ({took:.1f} s)")


def template_name() -> str:
    """Name the template database after everything that decides its schema."""
    import django

    digest = hashlib.sha256(f"{APPS}/{PER_APP}/{SEED}/django {django.__version__}\n".encode())
    for path in sorted(PROJECT_DIR.glob("app*/migrations/*.py")):
        digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0")
        digest.update(path.read_bytes())
    return f"rollout_bench_doctor_{digest.hexdigest()[:12]}"


def ensure_template(name: str, rebuild: bool) -> float | None:
    """Build the template with a real ``migrate`` unless it exists; its wall time if built."""
    if rebuild:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if _exists(name):
        return None
    # Build under another name and rename at the end, so a failed or stopped migrate never
    # leaves a half-migrated template behind.
    building = f"{name}_build"
    _psql(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    _psql(f'CREATE DATABASE "{building}"')
    print(f"building {name}: manage.py migrate of the whole history (minutes) ...", flush=True)
    load = _load()
    began = time.perf_counter()
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=PROJECT_DIR,
        env=_env(building),
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - began
    if proc.returncode != 0:
        _psql(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        raise SystemExit(f"migrate failed after {took:.0f} s:\n{proc.stderr[-3000:]}")
    _psql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    loads = {"start": load, "end": _load()}
    print(f"migrate took {took:.1f} s (load average at start {load}, at end {loads['end']})")
    if took > SLOW_MIGRATE_S:
        # Still the real migrate, paid once: the template is reused until the migrations
        # or Django change, and a copy of it takes seconds.
        print(
            f"NOTE: the real migrate took more than {SLOW_MIGRATE_S // 60} minutes;"
            " it runs once, later runs copy the kept template"
        )
    (WORK / f"{name}.json").write_text(json.dumps({"migrate_s": took, "load": loads}))
    return took


def fresh_working_copy(template: str) -> float:
    """Copy the template into the working database; the copy's wall time."""
    _psql(f'DROP DATABASE IF EXISTS "{WORKING_DB}" WITH (FORCE)')
    began = time.perf_counter()
    _psql(f'CREATE DATABASE "{WORKING_DB}" TEMPLATE "{template}"')
    return time.perf_counter() - began


def database_size(database: str) -> dict[str, int]:
    tables = _psql(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        database,
    )
    recorded = _psql("SELECT count(*) FROM django_migrations", database)
    return {"tables": int(tables), "recorded_migrations": int(recorded)}


def in_process(profile: Path | None = None) -> dict[str, Any]:
    """Run ``api.doctor`` after ``django.setup()`` in a fresh interpreter; its JSON line."""
    args = [str(VENV / "bin" / "python"), "-c", IN_PROCESS]
    if profile is not None:
        args.append(str(profile))
    proc = subprocess.run(
        args, cwd=PROJECT_DIR, env=_env(WORKING_DB), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"in-process doctor exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def cli_once() -> Sample:
    """Run the console script as a user does; wall time and its JSON report."""
    cmd = [str(VENV / "bin" / "django-rollout"), "--settings", SETTINGS, "doctor"]
    cmd += ["--database", "default", "--format", "json"]
    load = _load()
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_DIR, env=_env(WORKING_DB), capture_output=True)
    wall = time.perf_counter() - began
    if proc.returncode not in (0, 1):
        err = proc.stderr.decode(errors="replace")[-3000:]
        raise SystemExit(f"doctor exited {proc.returncode}:\n{err}")
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        out = proc.stdout.decode(errors="replace")[:500]
        raise SystemExit(f"doctor --format json printed no JSON:\n{out}") from None
    return Sample(wall, load, {"report": report, "returncode": proc.returncode})


def _runs(samples: list[Sample]) -> list[dict[str, Any]]:
    return [{"wall_s": round(s.wall, 3), "load": s.load} for s in samples]


def false_alarms(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(
        f"{f['rule']} ({f['severity']}): {f['message']}"
        for f in findings
        if (f.get("rule") or "").startswith(FALSE_ALARM_PREFIX)
        and f.get("severity") in ("warning", "error")
    )


def rule_counts(findings: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        key = f"{f.get('rule')}/{f.get('severity')}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure")
    parser.add_argument("--profile", action="store_true", help="pyinstrument HTML profile")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the project first")
    parser.add_argument("--rebuild", action="store_true", help="migrate the template afresh")
    parser.add_argument("--keep", action="store_true", help=f"keep {WORKING_DB} afterwards")
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)

    ensure_project(args.regenerate)
    template = template_name()
    migrate_s = ensure_template(template, args.rebuild)
    copy_s = fresh_working_copy(template)
    size = database_size(WORKING_DB)
    print(f"template database: {template} (copied in {copy_s:.1f} s)")
    print(f"tables: {size['tables']}, recorded migrations: {size['recorded_migrations']}")
    result: dict[str, Any] = {
        "project": {"apps": APPS, "per_app": PER_APP, "seed": SEED, **size},
        "template": template,
        "migrate_s": migrate_s,
        "copy_s": copy_s,
    }
    try:
        first = in_process()
        if "unavailable" in first:
            print(f"doctor is not available: {first['unavailable']}")
            result["unavailable"] = first["unavailable"]
            (WORK / "doctor.json").write_text(json.dumps(result, indent=2))
            return 2

        # The warm-up (pyc compilation, page cache) is the in-process run above plus this one.
        cli_once()
        cli = [cli_once() for _ in range(args.repeat)]
        inner: list[Sample] = []
        for _ in range(args.repeat):
            load = _load()
            doc = in_process()
            inner.append(Sample(doc["doctor_s"], load, doc))
        if args.profile:
            html = WORK / "profile-doctor.html"
            in_process(html)
            print(f"profile: {html}")
    finally:
        if not args.keep:
            _psql(f'DROP DATABASE IF EXISTS "{WORKING_DB}" WITH (FORCE)')

    wall = statistics.median(s.wall for s in cli)
    inner_s = statistics.median(s.wall for s in inner)
    setup_s = statistics.median(s.extra["setup_s"] for s in inner)
    report = cli[0].extra["report"]
    findings: list[dict[str, Any]] = list(report.get("findings", []))
    alarms = false_alarms(findings)
    inner_alarms = false_alarms(inner[0].extra["findings"])
    repair = report.get("repair", inner[0].extra["repair"])
    ratio = wall / TARGET_S

    print(f"{'measure':34} {'median s':>9}  runs (load average 1/5/15 min)")
    for label, value, samples in (
        ("doctor CLI (wall, start-up incl.)", wall, cli),
        ("api.doctor in-process", inner_s, inner),
    ):
        runs = ", ".join(f"{s.wall:.2f} {s.load}" for s in samples)
        print(f"{label:34} {value:9.2f}  {runs}")
    print(f"{'  django.setup() (info)':34} {setup_s:9.2f}")
    # doctor's own split, from its report (info; absent if the report has none)
    split: dict[str, float] = {}
    for key in cli[0].extra["report"].get("timings_s", {}):
        values = [s.extra["report"].get("timings_s", {}).get(key) for s in cli]
        split[key] = statistics.median(float(v) for v in values if v is not None)
    for key, value in split.items():
        print(f"{'  report timings_s ' + key:34} {value:9.2f}  (info)")
    print()
    good = ratio <= 1.0
    print(f"{'doctor wall / 10 s':34} {ratio:9.3f}  <= 1.0 {'PASS' if good else 'FAIL'}")
    counts = rule_counts(findings)
    print(f"findings: {len(findings)} {counts if counts else ''}".rstrip())
    n_repair = len(repair) if isinstance(repair, list) else repair
    print(f"repair actions: {n_repair}")
    for key in ("migrations", "schema"):
        if key in report:
            print(f"{key} (info): {json.dumps(report[key])}")
    if rule_counts(inner[0].extra["findings"]) != counts:
        print(f"note: api.doctor's findings differ: {rule_counts(inner[0].extra['findings'])}")
    alarms = sorted(set(alarms) | set(inner_alarms))
    if alarms:
        print(f"FALSE ALARMS: {len(alarms)} on a database that migrate built")
        for line in alarms:
            print(f"  {line}")
    result.update(
        {
            "cli": _runs(cli),
            "cli_wall_median_s": wall,
            "cli_timings_s": split,
            "in_process": _runs(inner),
            "in_process_median_s": inner_s,
            "setup_median_s": setup_s,
            "ratio": ratio,
            "findings": counts,
            "false_alarms": alarms,
            "repair": n_repair,
        }
    )
    (WORK / "doctor.json").write_text(json.dumps(result, indent=2))
    ok = good and not alarms
    print("ALL TARGETS PASS" if ok else "SOME TARGETS FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
