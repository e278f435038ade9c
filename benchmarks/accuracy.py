"""Accuracy on the example project: each seeded hazard against what `check` reports.

Run from the repository root: ``python benchmarks/accuracy.py``. Prints a Markdown table
(hazards: expected vs reported error/warning rules; safe twins: what they report) and totals.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


def main() -> int:
    manifest = json.loads((SHOP / "expected.json").read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "django_rollout",
            "--settings",
            "shop.settings",
            "check",
            "--format",
            "json",
        ],
        cwd=SHOP,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(proc.stdout)
    got: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in report["findings"]:
        if f["severity"] in ("error", "warning") and f["migration"]:
            got[(f["app_label"], f["migration"])].add(f["rule"])
    print("| migration | expected | reported | verdict |\n|---|---|---|---|")
    exact = 0
    hazard_rules = found_rules = 0
    for h in manifest["hazards"]:
        key = (h["app_label"], h["migration"])
        want, have = set(h["rules"]), got[key]
        hazard_rules += len(want)
        found_rules += len(want & have)
        ok = want == have
        exact += ok
        verdict = "exact" if ok else f"missing {sorted(want - have)} extra {sorted(have - want)}"
        row = (f"{key[0]}.{key[1]}", ", ".join(sorted(want)), ", ".join(sorted(have)), verdict)
        print("| " + " | ".join(row) + " |")
    quiet = 0
    for s in manifest["safe"]:
        key = (s["app_label"], s["migration"])
        have = got[key]
        quiet += not have
        verdict = "silent" if not have else f"reports {sorted(have)}"
        print(
            f"| {key[0]}.{key[1]} (safe twin of {', '.join(s['twin_of'])}) | - | "
            f"{', '.join(sorted(have)) or '-'} | {verdict} |"
        )
    startup = {f["rule"] for f in report["findings"] if f["migration"] is None}
    print()
    print(f"hazard migrations reported exactly: {exact}/{len(manifest['hazards'])}")
    print(f"expected rule ids reported: {found_rules}/{hazard_rules}")
    print(f"safe twins with no error or warning: {quiet}/{len(manifest['safe'])}")
    print(f"start-up rules expected {manifest.get('startup', [])}, reported {sorted(startup)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
