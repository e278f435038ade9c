"""Measure the speed and peak memory of ``django-rollout check`` against its anchors.

    python benchmarks/run.py [--synthetic] [--wagtail] [--linter] [--sql] [--profile]
                             [--repeat N] [--linter-timeout S]

With no project flag both projects run. Every measurement is a fresh subprocess: wall time
(median of N runs after one unmeasured warm-up that compiles the .pyc files), CPU time, and
peak RSS from ``os.wait4``'s rusage of that one child, read by a small launcher process
(``_launch.py``) so that this script's own size does not leak into it. Anchors, per the
issue's targets:

* ``manage.py showmigrations``: check takes at most its time and at most 1.5x its peak RSS;
* django-migration-linter's ``lintmigrations --no-cache`` (synthetic only, run once, capped
  by --linter-timeout: a capped run gives a lower bound): at least 20x check's time;
* one pass of Django's ``MigrationExecutor.collect_sql`` over the full plan
  (benchmarks/collect_sql_anchor.py): ``check --sql`` takes at most 1.2x its time.

The findings of every timed run must equal those of a plain, untimed run. Results are also
written to benchmarks/.work/results.json. Needs PostgreSQL at 127.0.0.1:5432 (user postgres):
a scratch database ``rollout_bench`` (or $ROLLOUT_BENCH_DB) is created if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
MAIN_VENV = Path(os.environ.get("ROLLOUT_BENCH_VENV", "/work/venv"))
WAGTAIL_VENV = Path(os.environ.get("ROLLOUT_BENCH_WAGTAIL_VENV", "/work/venv-wagtail"))
DB_NAME = os.environ.get("ROLLOUT_BENCH_DB", "rollout_bench")

TARGETS = {
    "check/showmigrations time": ("<=", 1.0),
    "check/showmigrations peak RSS": ("<=", 1.5),
    "linter/check time": (">=", 20.0),
    "check --sql/collect_sql time": ("<=", 1.2),
}


@dataclass
class Project:
    name: str
    root: Path
    settings: str
    venv: Path  # runs showmigrations, check and the collect_sql anchor
    linter_venv: Path | None = None  # has django-migration-linter; None: not measured

    def python(self, venv: Path | None = None) -> str:
        return str((venv or self.venv) / "bin" / "python")

    def rollout(self) -> str:
        return str(self.venv / "bin" / "django-rollout")


@dataclass
class Sample:
    wall: float
    cpu: float
    maxrss_kb: int
    returncode: int
    stdout: str = ""
    timed_out: bool = False


@dataclass
class Measure:
    label: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss_mb(self) -> float:
        return max(s.maxrss_kb for s in self.samples) / 1024

    def summary(self) -> dict[str, Any]:
        return {
            "wall_median_s": round(self.wall, 3),
            "wall_all_s": [round(s.wall, 3) for s in self.samples],
            "cpu_median_s": round(self.cpu, 3),
            "peak_rss_mb": round(self.rss_mb, 1),
            "returncodes": sorted({s.returncode for s in self.samples}),
            "timed_out": any(s.timed_out for s in self.samples),
        }


def env_for(project: Project) -> dict[str, str]:
    env = dict(os.environ)
    env["ROLLOUT_BENCH_DB"] = DB_NAME
    env["DJANGO_SETTINGS_MODULE"] = project.settings
    env["PYTHONDONTWRITEBYTECODE"] = ""
    env.pop("PYTHONDONTWRITEBYTECODE")
    env["NO_COLOR"] = "1"
    return env


def run_once(cmd: list[str], project: Project, timeout: float | None = None) -> Sample:
    """Run ``cmd`` in the project directory; wall, CPU and peak RSS of that child alone.

    The child is started by ``_launch.py``, a small fresh interpreter, never by this process:
    Linux carries the peak RSS of the process that forks over to the child, and this one
    grows to more than the commands it measures.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "sample.json"
        limit = "-" if timeout is None else str(timeout)
        subprocess.run(
            [sys.executable, str(HERE / "_launch.py"), str(result), limit, *cmd],
            cwd=project.root,
            env=env_for(project),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
        out.seek(0)
        text = out.read()
        if not result.exists():
            raise SystemExit(f"the launcher did not measure {cmd[:3]}\n{text[-3000:]}")
        got = json.loads(result.read_text())
    return Sample(
        wall=got["wall"],
        cpu=got["cpu"],
        maxrss_kb=got["maxrss_kb"],
        returncode=got["returncode"],
        stdout=text,
        timed_out=got["timed_out"],
    )


def measure(
    label: str,
    cmd: list[str],
    project: Project,
    repeat: int,
    ok: set[int],
    warmup: bool = True,
    timeout: float | None = None,
) -> Measure:
    m = Measure(label)
    if warmup:
        s = run_once(cmd, project, timeout)
        _require(label, s, ok)
    for _ in range(repeat):
        s = run_once(cmd, project, timeout)
        _require(label, s, ok)
        m.samples.append(s)
    print(
        f"  {label:34} wall {m.wall:8.2f}s  cpu {m.cpu:8.2f}s  peak {m.rss_mb:7.1f} MiB",
        file=sys.stderr,
    )
    return m


def measure_interleaved(
    specs: list[tuple[str, list[str], set[int]]], project: Project, repeat: int
) -> list[Measure]:
    """Measure several commands in rounds, one run of each per round, so that a machine that
    slows down or speeds up meanwhile (a shared host) moves every measure alike, not only the
    one it happened to be running. Each command gets one unmeasured warm-up first."""
    measures = [Measure(label) for label, _, _ in specs]
    for label, cmd, ok in specs:
        _require(label, run_once(cmd, project), ok)
    for _ in range(repeat):
        for m, (label, cmd, ok) in zip(measures, specs, strict=True):
            s = run_once(cmd, project)
            _require(label, s, ok)
            m.samples.append(s)
    for m in measures:
        print(
            f"  {m.label:34} wall {m.wall:8.2f}s  cpu {m.cpu:8.2f}s  peak {m.rss_mb:7.1f} MiB",
            file=sys.stderr,
        )
    return measures


def instructions(label: str, cmd: list[str], project: Project) -> int | None:
    """Count the instructions one run of ``cmd`` executes (valgrind's cachegrind, without
    its cache simulation; about 15x slower than a plain run). Unlike wall or CPU time, the
    count does not move with what else the host runs. None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("  (no valgrind: instruction counts left out)", file=sys.stderr)
        return None
    proc = subprocess.run(
        [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *cmd],
        cwd=project.root,
        env=env_for(project),
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if match is None:
        raise SystemExit(f"valgrind counted nothing for {cmd[:3]}\n{proc.stderr[-3000:]}")
    count = int(match.group(1).replace(",", ""))
    print(f"  {label:34} {count / 1e9:8.2f} G instructions", file=sys.stderr)
    return count


def _require(label: str, s: Sample, ok: set[int]) -> None:
    if s.timed_out or s.returncode in ok:
        return
    raise SystemExit(f"{label}: exit {s.returncode}\n{s.stdout[-3000:]}")


def ensure_database() -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def findings_of(stdout: str) -> tuple[list[Any], list[Any]]:
    doc = json.loads(stdout)
    return doc["findings"], doc["unit"]


def synthetic_project() -> Project:
    sys.path.insert(0, str(HERE))
    from synthetic import write_project

    root = WORK / "synthetic"
    stamp = root / "GENERATED"
    if not stamp.exists():
        total = write_project(root)
        print(f"generated {total} migrations in {root}", file=sys.stderr)
    linter = WAGTAIL_VENV if (WAGTAIL_VENV / "bin" / "python").exists() else None
    return Project("synthetic", root, "synth_project.settings", MAIN_VENV, linter)


def wagtail_project() -> Project:
    if not (WAGTAIL_VENV / "bin" / "python").exists():
        raise SystemExit(f"no {WAGTAIL_VENV}: see benchmarks/README.md for its setup")
    return Project("wagtail", HERE / "wagtail_project", "wagtail_bench.settings", WAGTAIL_VENV)


def edited_last_migration(
    project: Project, check_cmd: list[str], store: Path, repeat: int
) -> Measure:
    """Time the run after an edit of the plan's last migration, the common case while
    writing one: every verdict but the last is kept. Each run sees a new edit; the file is
    restored afterwards (and its verdict with the next run)."""
    cmd = [*check_cmd, "--cache-dir", str(store)]
    listed = run_once([*check_cmd, "--no-cache"], project)
    _require("listing", listed, {0, 1})
    # The last migration of the plan that lives in the project (not an installed app's).
    unit = json.loads(listed.stdout)["unit"]
    paths = [project.root / app / "migrations" / f"{name}.py" for app, name in reversed(unit)]
    path = next((p for p in paths if p.exists()), None)
    if path is None:
        raise SystemExit(f"{project.name}: no migration of the plan lives in {project.root}")
    original = path.read_bytes()
    m = Measure("check, last migration edited")
    try:
        for n in range(repeat):
            path.write_bytes(original + f"\n# benchmark edit {n} {time.time()}\n".encode())
            sample = run_once(cmd, project)
            _require(m.label, sample, {0, 1})
            m.samples.append(sample)
    finally:
        path.write_bytes(original)
    print(
        f"  {m.label:34} wall {m.wall:8.2f}s  cpu {m.cpu:8.2f}s  peak {m.rss_mb:7.1f} MiB",
        file=sys.stderr,
    )
    return m


def bench(project: Project, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {project.name} ({project.root})", file=sys.stderr)
    py = project.python()
    check_cmd = [project.rollout(), "--settings", project.settings, "check", "--format", "json"]
    ok = {0, 1}
    res: dict[str, Any] = {"project": project.name}

    # The default run keeps each migration's findings (graph/verdicts.py): the warm-up run
    # fills a fresh store, the timed runs read it. --no-cache judges everything every time.
    store = WORK / f"cache-{project.name}"
    shutil.rmtree(store, ignore_errors=True)
    cold_cmd = [*check_cmd, "--no-cache"]
    show, show_skip, check, cold = measure_interleaved(
        [
            ("manage.py showmigrations", [py, "manage.py", "showmigrations"], {0}),
            (
                "showmigrations --skip-checks",
                [py, "manage.py", "showmigrations", "--skip-checks"],
                {0},
            ),
            ("django-rollout check (cache kept)", [*check_cmd, "--cache-dir", str(store)], ok),
            ("django-rollout check --no-cache", cold_cmd, ok),
        ],
        project,
        args.repeat,
    )
    edited = edited_last_migration(project, check_cmd, store, args.repeat)
    res["migrations"] = len(findings_of(check.samples[0].stdout)[1])

    # the benchmark's findings must equal a normal run's
    plain = run_once(
        [py, "-m", "django_rollout", "--settings", project.settings, "check", "--format", "json"],
        project,
    )
    _require("plain check", plain, ok)
    reference = findings_of(plain.stdout)
    equal = all(
        findings_of(s.stdout) == reference for m in (check, cold, edited) for s in m.samples
    )
    res["findings"] = len(reference[0])
    res["findings_equal_plain_run"] = equal
    res["measures"] = {
        "showmigrations": show.summary(),
        "showmigrations_skip_checks": show_skip.summary(),
        "check": check.summary(),
        "check_no_cache": cold.summary(),
        "check_last_migration_edited": edited.summary(),
    }
    ratios: dict[str, float] = {
        "check/showmigrations time": check.wall / show.wall,
        "check/showmigrations peak RSS": check.rss_mb / show.rss_mb,
    }
    info: dict[str, float] = {
        "check/showmigrations CPU": check.cpu / show.cpu,
        # each round's two runs side by side: the ratio least moved by the host's drift
        "check/showmigrations time, median of the rounds' ratios": statistics.median(
            c.wall / s.wall for c, s in zip(check.samples, show.samples, strict=True)
        ),
        "check --no-cache/showmigrations time": cold.wall / show.wall,
        "check --no-cache/showmigrations peak RSS": cold.rss_mb / show.rss_mb,
        "check, last migration edited/showmigrations": edited.wall / show.wall,
        "system checks share of showmigrations": 1 - show_skip.wall / show.wall,
    }
    if args.instructions:
        # the edited runs left the store one migration behind: bring it up to date first
        _require("refresh", run_once([*check_cmd, "--cache-dir", str(store)], project), ok)
        counted = {
            label: instructions(label, cmd, project)
            for label, cmd in (
                ("showmigrations", [py, "manage.py", "showmigrations"]),
                ("check", [*check_cmd, "--cache-dir", str(store)]),
                ("check --no-cache", cold_cmd),
            )
        }
        res["instructions"] = counted
        if all(counted.values()):
            info["check/showmigrations instructions"] = counted["check"] / counted["showmigrations"]
            info["check --no-cache/showmigrations instructions"] = (
                counted["check --no-cache"] / counted["showmigrations"]
            )

    if args.sql:
        # no warm-up: the default runs above compiled the .pyc files, and a --sql run on the
        # synthetic history takes minutes
        sql = measure(
            "django-rollout check --sql",
            [*cold_cmd, "--sql"],
            project,
            args.sql_repeat,
            ok,
            warmup=False,
        )
        anchor = measure(
            "collect_sql single pass",
            [py, str(HERE / "collect_sql_anchor.py")],
            project,
            args.sql_repeat,
            {0},
            warmup=False,
        )
        anchor_doc = json.loads(anchor.samples[0].stdout.strip().splitlines()[-1])
        res["collect_sql"] = anchor_doc
        sql_findings = findings_of(sql.samples[0].stdout)[0]
        res["sql_findings_superset_of_default"] = all(f in sql_findings for f in reference[0])
        res["measures"]["check_sql"] = sql.summary()
        res["measures"]["collect_sql_anchor"] = anchor.summary()
        ratios["check --sql/collect_sql time"] = sql.wall / anchor.wall
        info["check --sql/collect_sql CPU"] = sql.cpu / anchor.cpu

    if args.linter and project.linter_venv is not None:
        settings = project.settings.rsplit(".", 1)[0] + ".settings_linter"
        lint = measure(
            "lintmigrations --no-cache",
            [
                project.python(project.linter_venv),
                "manage.py",
                "lintmigrations",
                "--no-cache",
                "--settings",
                settings,
            ],
            project,
            1,
            {0, 1},
            warmup=False,
            timeout=args.linter_timeout,
        )
        res["measures"]["linter"] = lint.summary()
        ratios["linter/check time"] = lint.wall / cold.wall  # against the cold run
        res["linter_lower_bound"] = lint.samples[0].timed_out

    if args.profile:
        split = run_once([py, str(HERE / "split.py"), project.settings], project)
        _require("split", split, {0})
        res["split"] = json.loads(split.stdout.strip().splitlines()[-1])
        print(f"  unprofiled split: {res['split']}", file=sys.stderr)
        res["profile"] = profile(project, cold_cmd[1:], "default run, --no-cache")
        if args.sql and args.profile_sql:
            res["profile_sql"] = profile(project, [*cold_cmd[1:], "--sql"], "--sql run")

    res["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    res["info"] = {k: round(v, 3) for k, v in info.items()}
    return res


# ------------------------------------------------------------------------------ profile


def profile(project: Project, rollout_args: list[str], title: str) -> dict[str, Any]:
    out = WORK / f"profile-{project.name}-{'sql' if '--sql' in rollout_args else 'default'}.prof"
    cmd = [
        project.python(),
        "-m",
        "cProfile",
        "-o",
        str(out),
        "-m",
        "django_rollout",
        *rollout_args,
    ]
    sample = run_once(cmd, project)
    _require(f"profile {title}", sample, {0, 1})
    stats = pstats.Stats(str(out))
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]

    def cum(pred: Any) -> float:
        return sum(v[3] for k, v in table.items() if pred(k))

    def fn(path_part: str, name: str) -> Any:
        return lambda k: path_part in k[0] and k[2] == name

    rules_dir = f"django_rollout{os.sep}rules{os.sep}"
    hooks = {"check_operation", "check_migration", "check_project"}
    total = stats.total_tt  # type: ignore[attr-defined]
    parts = {
        "setup_django (settings + django.setup + A601 capture)": cum(
            fn("django_rollout/db/startup.py", "setup_django")
        ),
        "  of which django.setup()": cum(fn("django/__init__.py", "setup")),
        "load_graph (import migration modules, build graph, plan)": cum(
            fn("django_rollout/graph/loader.py", "load_graph")
        ),
        "  of which MigrationLoader.load_disk (imports)": cum(
            fn("django/db/migrations/loader.py", "load_disk")
        ),
        "  of which MigrationLoader.build_graph": cum(
            fn("django/db/migrations/loader.py", "build_graph")
        ),
        "walk (Walker.each_on_its_own / as_one_unit, incl. rules)": cum(
            fn("django_rollout/graph/walk.py", "each_on_its_own")
        )
        + cum(fn("django_rollout/graph/walk.py", "as_one_unit")),
        "  of which operation.state_forwards": cum(
            lambda k: "django/db/migrations/operations" in k[0] and k[2] == "state_forwards"
        ),
        "  of which graph.model.view (before/after ModelState)": cum(
            fn("django_rollout/graph/model.py", "view")
        ),
        "  of which rule hooks (check_operation/check_migration)": cum(
            lambda k: rules_dir in k[0] and k[2] in hooks - {"check_project"}
        ),
        "rules' check_project": cum(lambda k: rules_dir in k[0] and k[2] == "check_project"),
        "rendering model states (ProjectState.apps, reload_model[s])": cum(
            lambda k: (
                k[0].endswith("django/db/migrations/state.py")
                and k[2] in ("apps", "reload_model", "reload_models")
            )
        ),
        "_collect_sql (--sql)": cum(fn("django_rollout/api.py", "_collect_sql")),
        "suppressions + locating (_suppress, _locate)": cum(
            fn("django_rollout/api.py", "_suppress")
        )
        + cum(fn("django_rollout/api.py", "_locate")),
        "reporting (render)": cum(
            lambda k: "django_rollout/reporting" in k[0] and k[2] == "render"
        ),
    }
    per_rule: dict[str, float] = {}
    for k, v in table.items():
        if rules_dir in k[0] and k[2] in hooks:
            per_rule[k[0].split(rules_dir, 1)[1]] = (
                per_rule.get(k[0].split(rules_dir, 1)[1], 0.0) + v[3]
            )
    ours = sorted(
        ((v[2], v[3], v[1], k) for k, v in table.items() if "django_rollout" in k[0]), reverse=True
    )[:15]
    print(
        f"\n  profile of {project.name} {title}: {total:.2f}s profiled, "
        f"{sample.wall:.2f}s wall under cProfile",
        file=sys.stderr,
    )
    for label, seconds in parts.items():
        print(f"    {label:62} {seconds:7.2f}s {100 * seconds / total:5.1f}%", file=sys.stderr)
    print("    slowest rules (cumulative):", file=sys.stderr)
    for name, seconds in sorted(per_rule.items(), key=lambda x: -x[1])[:8]:
        print(f"      {name:60} {seconds:7.3f}s", file=sys.stderr)
    print("    django_rollout functions by own time (tottime, cumtime, calls):", file=sys.stderr)
    for tt, ct, calls, k in ours:
        where = k[0].split("django_rollout" + os.sep, 1)[-1]
        print(f"      {where}:{k[1]} {k[2]:32} {tt:6.3f}s {ct:7.3f}s {calls:8}", file=sys.stderr)
    return {
        "profiled_seconds": round(total, 3),
        "parts": {k.strip(): round(v, 3) for k, v in parts.items()},
        "rules": {k: round(v, 4) for k, v in sorted(per_rule.items(), key=lambda x: -x[1])},
        "top_own": [
            {
                "where": f"{k[0].split('django_rollout' + os.sep, 1)[-1]}:{k[1]}",
                "function": k[2],
                "tottime": round(tt, 4),
                "cumtime": round(ct, 4),
                "calls": calls,
            }
            for tt, ct, calls, k in ours
        ],
    }


# ------------------------------------------------------------------------------ report


def print_table(results: list[dict[str, Any]]) -> bool:
    print()
    print(f"{'project':10} {'measure':34} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
    for res in results:
        for label, m in res["measures"].items():
            bound = " (lower bound: timed out)" if m["timed_out"] else ""
            print(
                f"{res['project']:10} {label:34} {m['wall_median_s']:8.2f} "
                f"{m['cpu_median_s']:8.2f} {m['peak_rss_mb']:9.1f}{bound}"
            )
    print()
    print(f"{'project':10} {'ratio':34} {'value':>8}  {'target':>8}  verdict")
    all_pass = True
    for res in results:
        for label, value in res["ratios"].items():
            op, target = TARGETS[label]
            passed = value <= target if op == "<=" else value >= target
            if label == "linter/check time" and res.get("linter_lower_bound"):
                label += " (>=)"
            all_pass &= passed
            print(
                f"{res['project']:10} {label:34} {value:8.2f}  {op}{target:>6}  "
                f"{'PASS' if passed else 'FAIL'}"
            )
        for label, value in res["info"].items():
            print(f"{res['project']:10} {label:34} {value:8.2f}  {'(info)':>8}")
        eq = res["findings_equal_plain_run"]
        all_pass &= eq
        print(
            f"{res['project']:10} {'findings == plain run':34} {res['findings']:8}  "
            f"{'':8}  {'PASS' if eq else 'FAIL'}  ({res['migrations']} migrations judged)"
        )
    print()
    print("ALL TARGETS PASS" if all_pass else "SOME TARGETS FAIL")
    return all_pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="the synthetic history")
    parser.add_argument("--wagtail", action="store_true", help="wagtail 8 + contrib apps")
    parser.add_argument(
        "--linter", action="store_true", help="time django-migration-linter (synthetic only; slow)"
    )
    parser.add_argument(
        "--sql", action="store_true", help="time check --sql against Django's collect_sql (slow)"
    )
    parser.add_argument("--profile", action="store_true", help="where check's time goes")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the instructions of showmigrations and check (valgrind; a minute)",
    )
    parser.add_argument("--profile-sql", action="store_true", help="profile check --sql too")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measure")
    parser.add_argument("--sql-repeat", type=int, default=1, help="timed runs for --sql")
    parser.add_argument(
        "--linter-timeout",
        type=float,
        default=900.0,
        help="stop the linter after S seconds and report a lower bound",
    )
    parser.add_argument("--regenerate", action="store_true", help="rewrite the synthetic project")
    args = parser.parse_args(argv)
    if not (args.synthetic or args.wagtail):
        args.synthetic = args.wagtail = True
    WORK.mkdir(exist_ok=True)
    if args.regenerate and (WORK / "synthetic").exists():
        shutil.rmtree(WORK / "synthetic")
    ensure_database()
    projects = []
    if args.synthetic:
        projects.append(synthetic_project())
    if args.wagtail:
        projects.append(wagtail_project())
    results = [bench(p, args) for p in projects]
    (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if print_table(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
