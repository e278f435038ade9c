"""Precision study on real history: sample error/warning findings of wagtail's migrations.

    /work/venv-wagtail/bin/python benchmarks/precision.py [--findings FILE] [--rerun] [--n 50]
                                                        [--seed 2026] [--all] [--prior MD]

Runs ``django-rollout check`` (default mode: every migration judged against the state just
before it) on benchmarks/wagtail_project unless ``--findings`` names an existing JSON report,
prints the counts by rule and severity, then draws ``n`` error/warning findings with
``random.Random(seed).sample`` over a stable ordering (app, migration, operation index, rule,
message). For each it prints the operation's source from the migration file and the prior
state of the models involved (the ModelState before the migration, reconstructed with Django's
MigrationLoader: whether the model existed at all, the definition of the fields the operation
touches, before and after), so that a reviewer can judge each finding by hand. PRECISION.md
holds the verdicts. ``--prior`` names a study (PRECISION.md) whose first sample table is read:
a sampled finding with the same (migration, operation index, rule) shows the verdict given
there, so that a re-run reuses it unless the finding's message or severity changed.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "wagtail_project"
SETTINGS = "wagtail_bench.settings"


def run_check(out: Path) -> None:
    exe = Path(sys.executable).with_name("django-rollout")
    cmd = [str(exe), "--settings", SETTINGS, "check", "--format", "json", "-o", str(out)]
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"check failed ({proc.returncode}):\n{proc.stderr}")


def setup_django() -> None:
    sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django

    django.setup()


def sort_key(f: dict[str, Any]) -> tuple[Any, ...]:
    idx = f["operation_index"]
    return (
        f["app_label"],
        f["migration"],
        -1 if idx is None else idx,
        f["rule"] or "",
        f["message"],
    )


def operation_source(path: str | None, index: int | None, loader: Any, key: tuple[str, str]) -> str:
    if index is None:
        return "(no operation: deferred SQL or migration-level finding)"
    file = Path(path) if path else None
    if file is not None and not file.is_absolute():
        file = PROJECT / file
    if file is None or not file.is_file():
        return reconstructed(loader, key, index)
    text = file.read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Migration":
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "operations" for t in stmt.targets)
                    and isinstance(stmt.value, ast.List | ast.Tuple)
                ):
                    elts = stmt.value.elts
                    if index < len(elts):
                        return ast.get_source_segment(text, elts[index]) or "?"
    return reconstructed(loader, key, index)


def reconstructed(loader: Any, key: tuple[str, str], index: int) -> str:
    """The loaded operation, deconstructed (the list is built at import, e.g. per vendor)."""
    migration = loader.graph.nodes.get(key)
    if migration is None or index >= len(migration.operations):
        return "(operation not found)"
    name, args, kwargs = migration.operations[index].deconstruct()
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"# reconstructed from the loaded migration\n{name}({', '.join(parts)})"


def field_repr(field: Any) -> str:
    name, path, args, kwargs = field.deconstruct()
    kwargs.pop("verbose_name", None)
    kwargs.pop("help_text", None)
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in sorted(kwargs.items())]
    return f"{path.rsplit('.', 1)[-1]}({', '.join(parts)})"


def model_names(op: Any) -> list[str]:
    names = []
    for attr in ("model_name", "name", "old_name", "new_name"):
        value = getattr(op, attr, None)
        if isinstance(value, str) and (attr != "name" or not hasattr(op, "model_name")):
            names.append(value.lower())
    return names


def field_names(op: Any) -> list[str]:
    names = []
    if hasattr(op, "model_name"):
        for attr in ("name", "old_name", "new_name"):
            value = getattr(op, attr, None)
            if isinstance(value, str):
                names.append(value)
    for attr in ("unique_together", "index_together"):
        for group in getattr(op, attr, None) or ():
            names.extend(group)
    for attr in ("index", "constraint"):
        obj = getattr(op, attr, None)
        names.extend(getattr(obj, "fields", ()) or ())
    return names


def describe_state(
    app_label: str, model: str, before: Any, after: Any, fields: list[str]
) -> list[str]:
    lines = []
    key = (app_label, model)
    b = before.models.get(key)
    a = after.models.get(key)
    if b is None:
        lines.append(f"  model {app_label}.{model}: NOT in state before (new in this migration)")
    else:
        table = b.options.get("db_table") or f"{app_label}_{model}"
        lines.append(f"  model {app_label}.{model} (table {table}) before: fields {list(b.fields)}")
        for opt in ("unique_together", "indexes", "constraints"):
            if b.options.get(opt):
                lines.append(f"    {opt}: {b.options[opt]!r}")
    if a is None:
        lines.append(f"  model {app_label}.{model}: not in state after")
    for name in dict.fromkeys(fields):
        fb = b.fields.get(name) if b is not None else None
        fa = a.fields.get(name) if a is not None else None
        lines.append(f"    {name}: before {field_repr(fb) if fb else '(absent)'}")
        lines.append(f"    {' ' * len(name)}  after  {field_repr(fa) if fa else '(absent)'}")
        target = getattr(fa or fb, "remote_field", None)
        if target is not None and isinstance(target.model, str):
            ref = target.model.lower()
            ref_key = tuple(ref.split(".")) if "." in ref else (app_label, ref)
            lines.append(
                f"    -> references {'.'.join(ref_key)}: "
                f"{'in' if ref_key in before.models else 'NOT in'} state before"
            )
    return lines


def explain(finding: dict[str, Any], loader: Any) -> list[str]:
    key = (finding["app_label"], finding["migration"])
    migration = loader.graph.nodes.get(key)
    lines = []
    if migration is None:
        return ["  (migration not in graph)"]
    before = loader.project_state(key, at_end=False)
    after = loader.project_state(key, at_end=True)
    idx = finding["operation_index"]
    ops = [migration.operations[idx]] if idx is not None else []
    if idx is None:
        lines.append(f"  migration operations: {[type(o).__name__ for o in migration.operations]}")
    if getattr(migration, "replaces", None):
        lines.append(f"  (squashed migration replacing {len(migration.replaces)} migrations)")
    lines.append(f"  atomic={getattr(migration, 'atomic', True)}")
    for op in ops:
        for model in model_names(op):
            lines.extend(
                describe_state(finding["app_label"], model, before, after, field_names(op))
            )
    return lines


def prior_verdicts(path: Path) -> dict[tuple[str, int | None, str], tuple[str, str, str]]:
    """Map (app.migration, op index, rule) to the latest study's (severity, verdict, reason);
    a later verdict that only points back ("prior ...", "as #7") keeps the earlier reason."""
    verdicts: dict[tuple[str, int | None, str], tuple[str, str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[0].isdigit():
            continue
        _, migration, op, rule, sev, verdict, reason = cells
        head = op.split(" ", 1)[0]
        index = int(head) if head.isdigit() else None
        key = (migration, index, rule)
        if key in verdicts and reason.startswith(("prior", "as #", "same as", "re-judged")):
            reason = verdicts[key][2]
        verdicts[key] = (sev, verdict.strip("*"), reason)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--findings", type=Path, default=Path("/tmp/wagtail_findings.json"))
    parser.add_argument("--rerun", action="store_true", help="run check even if the file exists")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--all", action="store_true", help="explain every error/warning finding")
    parser.add_argument(
        "--prior", type=Path, help="an earlier study (markdown) whose verdicts to show"
    )
    args = parser.parse_args()
    if args.rerun or not args.findings.exists():
        run_check(args.findings)
    report = json.loads(args.findings.read_text(encoding="utf-8"))
    findings = report["findings"]

    print(f"s0_source: {report['s0_source']}; {len(report['unit'])} migrations judged")
    counts = collections.Counter((f["rule"], f["severity"]) for f in findings)
    for sev in ("error", "warning", "info"):
        rows = sorted((r or "-", n) for (r, s), n in counts.items() if s == sev)
        print(f"{sev:8} {sum(n for _, n in rows):4}  " + "  ".join(f"{r}:{n}" for r, n in rows))

    pool = sorted((f for f in findings if f["severity"] in ("error", "warning")), key=sort_key)
    sample = pool if args.all else random.Random(args.seed).sample(pool, min(args.n, len(pool)))

    setup_django()
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    prior = prior_verdicts(args.prior) if args.prior else {}
    for i, f in enumerate(sample, 1):
        print("\n" + "=" * 100)
        print(
            f"#{i} {f['rule']} {f['severity']}  {f['app_label']}.{f['migration']} "
            f"op[{f['operation_index']}] {f['operation']}  ({f['path']}:{f['line']})"
        )
        print(f"  message: {f['message']}")
        seen = prior.get((f"{f['app_label']}.{f['migration']}", f["operation_index"], f["rule"]))
        if seen is not None:
            print(f"  prior verdict ({seen[0]}): {seen[1]} - {seen[2]}")
        print("  source:")
        key = (f["app_label"], f["migration"])
        for line in operation_source(f["path"], f["operation_index"], loader, key).splitlines():
            print(f"    | {line}")
        for line in explain(f, loader):
            print(line)


if __name__ == "__main__":
    main()
