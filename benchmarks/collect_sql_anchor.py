"""The `--sql` anchor: one pass of Django's own ``MigrationExecutor.collect_sql`` over the plan.

Run in the project directory with DJANGO_SETTINGS_MODULE set (benchmarks/run.py does it).
Prints JSON: the number of statements, the seconds of the collect_sql pass alone, and the
migrations Django could not collect (a stock PostgreSQL editor introspects the live, empty
database: ``RenameIndex(old_fields=...)`` then fails). The loop is Django's
``collect_sql`` verbatim; a migration that raises is skipped and the pass goes on from the
state after it, so on a plan that collects cleanly it is exactly ``executor.collect_sql(plan)``.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())


def main() -> int:
    started = time.perf_counter()
    import django

    django.setup()
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    plan = executor.migration_plan(targets, clean_start=True)
    ready = time.perf_counter()
    statements, failed = _collect_sql(executor, plan)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "statements": len([s for s in statements if not s.startswith("--")]),
                "migrations": len(plan),
                "setup_and_load_seconds": round(ready - started, 3),
                "collect_sql_seconds": round(done - ready, 3),
                "failed": failed,
            }
        )
    )
    return 0


def _collect_sql(executor, plan):  # type: ignore[no-untyped-def]
    """``MigrationExecutor.collect_sql`` verbatim, plus skipping the migrations that raise."""
    statements: list[str] = []
    failed: list[str] = []
    state = None
    done: list[tuple[str, str]] = []
    for migration, backwards in plan:
        assert not backwards
        key = (migration.app_label, migration.name)
        if state is None:
            state = executor.loader.project_state(key, at_end=False)
        try:
            with executor.connection.schema_editor(
                collect_sql=True, atomic=migration.atomic
            ) as schema_editor:
                state = migration.apply(state, schema_editor, collect_sql=True)
            statements.extend(schema_editor.collected_sql)
        except Exception as exc:
            failed.append(f"{key[0]}.{key[1]}: {type(exc).__name__}: {exc}")
            state = executor.loader.project_state([*done, key], at_end=True)
        done.append(key)
    return statements, failed


if __name__ == "__main__":
    raise SystemExit(main())
