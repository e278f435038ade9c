"""``python -m django_rollout``: the console script."""

from __future__ import annotations

from django_rollout.cli import main

raise SystemExit(main())
