"""Unprofiled split of check's time: start-up, loading, the walk without rules, the rules.

Run in a project directory: python ../../split.py SETTINGS (benchmarks/run.py --profile runs it).
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())


def main() -> int:
    t0 = time.perf_counter()
    from django_rollout.db.startup import setup_django

    setup_django(sys.argv[1])
    t1 = time.perf_counter()
    from django_rollout import api
    from django_rollout.graph.loader import load_graph

    load_graph()
    t2 = time.perf_counter()
    api.check(rules=[])  # loads the graph again, walks, no rule
    t3 = time.perf_counter()
    report = api.check()
    t4 = time.perf_counter()
    api.dumps(report)
    t5 = time.perf_counter()
    walk_only = (t3 - t2) - (t2 - t1)
    print(
        json.dumps(
            {
                "imports_and_django_setup_s": round(t1 - t0, 3),
                "load_graph_s": round(t2 - t1, 3),
                "walk_without_rules_s": round(walk_only, 3),
                "full_check_api_s": round(t4 - t3, 3),
                "rules_and_locating_s": round((t4 - t3) - (t3 - t2), 3),
                "json_report_s": round(t5 - t4, 3),
                "findings": len(report.findings),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
