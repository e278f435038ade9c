"""The console script ``django-rollout``: parse arguments, call the API, render the report.

``manage.py rollout`` runs the same parser (see management/commands/rollout.py). Every
``RolloutError`` becomes one line on stderr and exit status 2, here and only here.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import IO, Any

from django_rollout import __version__
from django_rollout.errors import ConfigurationError, RolloutError
from django_rollout.findings import Severity

PROG = "django-rollout"
DEFAULT_CACHE = ".django_rollout_cache"  # graph/verdicts.py: what the default run keeps


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are RolloutErrors: one line, exit status 2."""

    def error(self, message: str) -> Any:  # argparse prints usage + exits 2; keep it one line
        raise ConfigurationError(f"{self.prog}: {message}")


def _common(top: bool) -> _Parser:
    """Return the flags every command takes, before or after the subcommand's name.

    The subcommands' copies default to SUPPRESS so that they do not overwrite a value given
    before the subcommand (``django-rollout --settings x check``).
    """
    common = _Parser(add_help=False)

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    common.add_argument("--settings", default=default(None), help="Django settings module")
    common.add_argument(
        "--pythonpath", default=default(None), help="a directory to add to sys.path"
    )
    common.add_argument(
        "--traceback",
        action="store_true",
        default=default(False),
        help="show a traceback on errors",
    )
    common.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=range(4),
        default=default(1),
        help="0 to 3, as in Django",
    )
    common.add_argument(
        "--no-color", action="store_true", default=default(False), help="never use colour"
    )
    common.add_argument(
        "--force-color", action="store_true", default=default(False), help="always use colour"
    )
    return common


def _s0_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the deployed state (S0); default: each migration on its own")
    group.add_argument("--since", metavar="GITREF", help="S0 = migration files present at GITREF")
    group.add_argument(
        "--database", metavar="ALIAS|URL", help="S0 = the rows of that database's django_migrations"
    )
    group.add_argument(
        "--applied-from",
        metavar="FILE",
        help="S0 = a snapshot written by `django-rollout snapshot`",
    )


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    common = _common(top=False)
    parser = _Parser(
        prog=prog,
        description="Make Django schema migrations safe to ship to a live production database.",
        parents=[_common(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser(
        "check",
        parents=[common],
        help="judge the deploy unit's migrations with the rule catalogue",
        description="Report every operation that breaks production while the previous release"
        " still serves. Exit 0: nothing at or above --fail-on; 1: findings; 2: bad input.",
    )
    check.add_argument("app_label", nargs="?", help="report only this app (S0 is unchanged)")
    check.add_argument("migration_name", nargs="?", help="report only this migration (prefix)")
    _s0_flags(check)
    check.add_argument(
        "--format", choices=("text", "json", "sarif", "github"), default="text", help="output"
    )
    check.add_argument(
        "--fail-on", choices=("error", "warning", "info"), help="exit 1 at or above (default error)"
    )
    check.add_argument("--sql", action="store_true", help="add every statement Django will run")
    check.add_argument(
        "--explain", action="store_true", help="print each finding's safe recipe, filled in"
    )
    check.add_argument("--vendor", choices=("postgresql", "sqlite"), help="judge for this database")
    check.add_argument("--server-version", help="PostgreSQL major version to judge for, e.g. 16")
    check.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    check.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=DEFAULT_CACHE,
        help=f"keep each migration's findings here between default runs (default {DEFAULT_CACHE})",
    )
    check.add_argument(
        "--no-cache", action="store_true", help="judge every migration, read and write no cache"
    )

    rehearse = sub.add_parser(
        "rehearse",
        parents=[common],
        help="replay the deploy unit on a scratch database with live-looking traffic",
        description="Walk one scratch database forward through S0 and the unit, topped up with"
        " synthetic rows, while old-code traffic reads and writes; report what production would"
        " have seen. Exit 0: nothing at or above --fail-on; 1: findings or a failed migration;"
        " 2: bad input.",
    )
    rehearse.add_argument("app_label", nargs="?", help="report only this app (S0 is unchanged)")
    rehearse.add_argument("migration_name", nargs="?", help="report only this migration")
    _s0_flags(rehearse)
    rehearse.add_argument(
        "--scratch",
        default="default",
        metavar="ALIAS",
        help="create the scratch database on this alias's server (default: default)",
    )
    rehearse.add_argument(
        "--from-database",
        metavar="ALIAS|URL",
        dest="source",
        help="copy this database (only read: pg_dump | pg_restore, or a SQLite backup) and"
        " rehearse on the copy; S0 is what it has applied",
    )
    rehearse.add_argument(
        "--template",
        action="store_true",
        help="copy with CREATE DATABASE ... TEMPLATE on the source's server: faster, but no"
        " other session may be connected to the source, and it needs CREATEDB there",
    )
    rehearse.add_argument(
        "--rows",
        type=int,
        help="synthetic rows per table before each step (default: 1000; 0 with --from-database;"
        " with S0's row counts from --database or --applied-from, production's, scaled down)",
    )
    rehearse.add_argument(
        "--max-rows",
        type=int,
        default=100_000,
        metavar="N",
        help="with S0's row counts: rows for the largest table, the others in proportion"
        " (default 100000)",
    )
    rehearse.add_argument("--keep", action="store_true", help="keep the scratch database")
    rehearse.add_argument(
        "--no-cluster",
        action="store_true",
        help="for a PostgreSQL production with no PostgreSQL server configured, rehearse on"
        " SQLite instead of starting an ephemeral local cluster (never a 'safe' verdict)",
    )
    rehearse.add_argument(
        "--traffic",
        choices=("background", "interleaved", "none"),
        default="background",
        help="background (default): old and new code read and write around each migration;"
        " interleaved: also start the real application (django.setup() in a new process, then"
        " new-code traffic) between migrations, as servers that run migrate on start do;"
        " none: only run the migrations",
    )
    rehearse.add_argument(
        "--no-traffic",
        action="store_const",
        dest="traffic",
        const="none",
        help="the same as --traffic none",
    )
    rehearse.add_argument(
        "--adversarial",
        action="store_true",
        help="before each migration, also write the rows that break each constraint it adds",
    )
    rehearse.add_argument(
        "--vendor",
        choices=("postgresql", "sqlite"),
        help="the production database (default: from DATABASES); SQLite is never safe for it",
    )
    rehearse.add_argument("--format", choices=("text", "json"), default="text", help="output")
    rehearse.add_argument(
        "--fail-on", choices=("error", "warning", "info"), help="exit 1 at or above (default error)"
    )
    rehearse.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    rehearse.add_argument(
        "--report",
        metavar="FILE",
        help="also write the rehearsal as a self-contained HTML timeline to FILE",
    )

    snapshot = sub.add_parser(
        "snapshot",
        parents=[common],
        help="write the applied migrations and table sizes of a database as JSON",
        description="Write S0 for `check --applied-from`: CI can judge the real deploy without"
        " access to production.",
    )
    snapshot.add_argument("--database", default="default", metavar="ALIAS|URL")
    snapshot.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="compare django_migrations with the real schema and the code; write the repair",
        description="Find where the records, the schema and the code disagree, with the"
        " evidence, and the exact repair. Dry-run unless --apply. Exit 0: nothing at or above"
        " --fail-on; 1: findings; 2: bad input; with --code-age, 3: the code is older than"
        " the database.",
    )
    doctor.add_argument("app_label", nargs="?", help="report only this app")
    doctor.add_argument("--database", default="default", metavar="ALIAS|URL")
    doctor.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text")
    doctor.add_argument(
        "--fail-on", choices=("error", "warning", "info"), help="exit 1 at or above (default error)"
    )
    doctor.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    doctor.add_argument(
        "--code-age",
        action="store_true",
        help="only say whether the database has migrations this code lacks (exit 3 if so)",
    )
    doctor.add_argument(
        "--apply",
        action="store_true",
        help="carry the repair out: back up django_migrations, change the records, migrate",
    )
    doctor.add_argument(
        "--backup", metavar="FILE", help="where --apply writes the rows (default: a dated file)"
    )
    doctor.add_argument(
        "--no-input", "--noinput", action="store_true", help="do not ask before --apply"
    )

    explain = sub.add_parser(
        "explain",
        parents=[common],
        help="print a rule's documentation",
        description="Print the documentation of one rule, or list every rule.",
    )
    explain.add_argument("rule", nargs="?", help="a rule id such as C101; omit to list all")

    sub.add_parser("_startup", parents=[common], help=argparse.SUPPRESS)
    return parser


def _setup(args: argparse.Namespace, already: bool) -> Any:
    from django_rollout.db.startup import setup_django

    if args.pythonpath:
        sys.path.insert(0, os.path.abspath(args.pythonpath))
    if already:
        return _startup_in_subprocess(args)
    return setup_django(args.settings)


def _startup_in_subprocess(args: argparse.Namespace) -> Any:
    """Capture start-up queries in a fresh process: this one has already started Django."""
    from django_rollout.db.startup import StartupCapture
    from django_rollout.graph.context import StartupQuery

    env = dict(os.environ)
    command = [sys.executable, "-m", "django_rollout", "_startup"]
    if args.settings:
        command += ["--settings", args.settings]
    path = [os.getcwd(), *[p for p in sys.path if p]]
    env["PYTHONPATH"] = os.pathsep.join(path)
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return StartupCapture(captured=False)
    doc = json.loads(result.stdout or "{}")
    return StartupCapture(
        queries=[StartupQuery(**q) for q in doc.get("queries", [])],
        error=doc.get("error"),
    )


def _open_output(path: str | None) -> IO[str]:
    if not path:
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from None


def _color(args: argparse.Namespace) -> bool | None:
    if args.no_color or os.environ.get("NO_COLOR"):
        return False
    return True if args.force_color else None


def _run_check(args: argparse.Namespace, capture: Any) -> int:
    from django_rollout import api
    from django_rollout.conf import parse_server_version

    options = _check_options(
        args,
        capture,
        sql=args.sql,
        server_version=parse_server_version(args.server_version) if args.server_version else None,
        cache_dir=None if args.no_cache else args.cache_dir,
    )
    report = api.check(options)
    if report.cache is not None and args.verbosity >= 2:
        kept, judged = report.cache
        print(
            f"{PROG}: {kept} migration(s) kept from {args.cache_dir}, {judged} judged afresh",
            file=sys.stderr,
        )
    _write(report, args, explain=args.explain)
    return report.exit_status


def _check_options(args: argparse.Namespace, capture: Any, **extra: Any) -> Any:
    """The S0 flags, report filters and start-up capture that check and rehearse share."""
    from django_rollout import api

    if args.migration_name and not args.app_label:
        raise ConfigurationError("a migration name needs an app label before it")
    return api.CheckOptions(
        since=args.since,
        database=args.database,
        applied_from=args.applied_from,
        app_label=args.app_label,
        migration=args.migration_name,
        vendor=args.vendor,
        fail_on=Severity.parse(args.fail_on) if args.fail_on else None,
        startup_queries=capture.queries,
        startup_error=capture.error,
        **extra,
    )


def _write(report: Any, args: argparse.Namespace, **render_options: Any) -> None:
    from django_rollout.reporting import render

    out = _open_output(args.output)
    try:
        render(report, args.format, out, color=_color(args), **render_options)
    finally:
        if out is not sys.stdout:
            out.close()


def _run_rehearse(args: argparse.Namespace, capture: Any) -> int:
    from django_rollout import api

    if args.rows is not None and args.rows < 0:
        raise ConfigurationError("--rows must be 0 or more")
    if args.max_rows < 1:
        raise ConfigurationError("--max-rows must be 1 or more")
    options = api.RehearseOptions(
        check=_check_options(args, capture),
        alias=args.scratch,
        rows=args.rows,
        max_rows=args.max_rows,
        keep=args.keep,
        traffic=args.traffic != "none",
        interleaved=args.traffic == "interleaved",
        adversarial=args.adversarial,
        source=args.source,
        template=args.template,
        cluster=not args.no_cluster,
    )
    if args.report:
        _check_writable(args.report)  # before minutes of rehearsal, not after
    report = api.rehearse(options, progress=_progress(args))
    _write(report, args)
    if args.report:
        _write_html(report, args.report)
    return report.exit_status


def _check_writable(path: str) -> None:
    """Refuse a path that the report could not be written to, as ``open`` would."""
    target = os.path.abspath(path)
    parent = os.path.dirname(target)
    if os.path.isdir(target):
        problem = errno.EISDIR
    elif not os.path.isdir(parent):
        problem = errno.ENOENT
    elif not os.access(parent, os.W_OK) or (
        os.path.exists(target) and not os.access(target, os.W_OK)
    ):
        problem = errno.EACCES
    else:
        return
    raise ConfigurationError(f"cannot write {path}: {os.strerror(problem)}")


def _write_html(report: Any, path: str) -> None:
    from django_rollout.reporting.html import render as render_html

    page = render_html(report)
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from None


def _progress(args: argparse.Namespace) -> Any:
    """Say which migration runs, on stderr, when it is a terminal (``rich`` status line)."""
    if args.verbosity < 1 or not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(file=sys.stderr)
    return lambda text: console.print(f"[dim]rehearsing[/dim] {text}", highlight=False)


def _run_snapshot(args: argparse.Namespace) -> int:
    from django_rollout.db.state import read_deployed
    from django_rollout.graph.deployed import snapshot_document

    deployed = read_deployed(args.database)
    doc = snapshot_document(deployed.applied or (), deployed.row_counts or {}, deployed.server)
    out = _open_output(args.output)
    try:
        json.dump(doc, out, indent=2)
        out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


CODE_OLDER = 3


def _run_doctor(args: argparse.Namespace) -> int:
    from django_rollout import api

    options = api.DoctorOptions(
        database=args.database,
        code_age=args.code_age,
        fail_on=Severity.parse(args.fail_on) if args.fail_on else None,
        app_label=args.app_label,
        backup=args.backup,
    )
    if args.code_age and args.apply:
        raise ConfigurationError("--code-age only reads: drop --apply")
    if args.apply and "://" in args.database:
        raise ConfigurationError("--apply needs a database alias from settings, not a URL")
    if args.apply and args.no_input:
        # Nothing to ask: diagnose once, apply, diagnose again (not a dry run first).
        options = replace(options, apply=True)
    report = api.doctor(options)
    if args.code_age:
        _write(report, args)
        return (
            CODE_OLDER
            if any(f.rule == "H503" and f.severity == Severity.ERROR for f in report.findings)
            else 0
        )
    if args.apply and not args.no_input and report.extra.get("repair"):
        if not _confirm(report, args):
            _write(report, args)
            print(f"{PROG}: nothing applied", file=sys.stderr)
            return report.exit_status
        report = api.doctor(replace(options, apply=True))
    _write(report, args)
    return report.exit_status


def _confirm(report: Any, args: argparse.Namespace) -> bool:
    """Show the repair and ask; refuse without a terminal unless --no-input."""
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "--apply asks for confirmation: run it on a terminal or add --no-input"
        )
    steps = report.extra["repair"]
    print(f"{PROG}: the repair of {args.database}:", file=sys.stderr)
    for n, step in enumerate(steps, 1):
        print(f"  {n}. {step['command']}", file=sys.stderr)
    answer = input(f"Apply these {len(steps)} step(s)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _run_explain(args: argparse.Namespace) -> int:
    from django_rollout.rules.registry import all_rules, rule_by_id

    if not args.rule:
        for rule in all_rules():
            first = rule.doc().splitlines()[0] if rule.doc() else ""
            print(f"{rule.id}  {str(rule.severity):7}  {rule.name:45}  {first}")
        return 0
    found = rule_by_id(args.rule)
    if found is None:
        raise ConfigurationError(f"unknown rule {args.rule!r} (see `{PROG} explain`)")
    print(f"{found.id} {found.name} ({found.severity})\n")
    print(found.doc())
    return 0


def _run_startup(args: argparse.Namespace) -> int:
    """Print the start-up queries as JSON (used by ``manage.py rollout``)."""
    from dataclasses import asdict

    from django_rollout.db.startup import setup_django

    capture = setup_django(args.settings)
    print(json.dumps({"queries": [asdict(q) for q in capture.queries], "error": capture.error}))
    return 0


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a command runs.

    A check allocates hundreds of thousands of short-lived objects (field clones, contexts,
    findings) that reference counting frees; the collector's default pace (every 700
    allocations) re-scans the whole loaded project over and over for little garbage: a
    fifth of the run on 2,000 migrations, for under 2 MiB of peak memory saved. mypy runs
    with the same kind of threshold. The previous pace is restored afterwards.
    """
    before = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run(argv: Sequence[str], *, prog: str = PROG, django_ready: bool = False) -> int:
    """Run one command; return its exit status. Errors become one line on stderr."""
    with _fewer_collections():
        return _run(argv, prog=prog, django_ready=django_ready)


def _run(argv: Sequence[str], *, prog: str, django_ready: bool) -> int:
    parser = build_parser(prog)
    traceback_wanted = "--traceback" in argv
    try:
        args = parser.parse_args(list(argv))
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "explain":
            return _run_explain(args)
        if args.command == "_startup":
            return _run_startup(args)
        capture = _setup(args, django_ready)
        if args.command == "snapshot":
            return _run_snapshot(args)
        if args.command == "rehearse":
            return _run_rehearse(args, capture)
        if args.command == "doctor":
            return _run_doctor(args)
        return _run_check(args, capture)
    except RolloutError as exc:
        if traceback_wanted:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line unless --traceback
        if traceback_wanted:
            traceback.print_exc()
        else:
            print(
                f"{prog}: internal error: {type(exc).__name__}: {exc} (rerun with --traceback"
                " and report it)",
                file=sys.stderr,
            )
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
