"""``manage.py rollout <subcommand>``: the same commands as the console script."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Make migrations safe to ship: check, snapshot, explain (see `rollout --help`)."
    requires_system_checks: list[str] = []  # system checks cost half of a start-up; skip them

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*")

    def run_from_argv(self, argv: list[str]) -> None:
        # Hand everything after "rollout" to our own parser, so flags mean the same in both faces.
        from django_rollout.cli import run

        status = run(argv[2:], prog=f"{argv[0]} rollout", django_ready=True)
        sys.exit(status)

    def handle(self, *args: Any, **options: Any) -> None:  # called by call_command()
        from django_rollout.cli import run

        status = run(list(args), prog="rollout", django_ready=True)
        if status:
            sys.exit(status)
