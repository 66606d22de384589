"""``manage.py rexecutor_prune``: apply the ``REXECUTOR["PRUNER"]`` rules once, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...backends import get_backend
from ...exceptions import ConfigurationError
from ...plugins.pruner import Pruner, describe_rule


class Command(BaseCommand):
    help = (
        'Delete old jobs as the REXECUTOR["PRUNER"] rules say, once, whatever the pruner\'s '
        "schedule; --dry-run only counts what each rule would delete."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print how many jobs each rule would delete, and delete nothing.",
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        try:
            pruner = Pruner.from_settings(get_backend())
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if pruner is None:
            raise CommandError(
                'REXECUTOR["PRUNER"] is not configured: there are no rules to apply.'
            )
        if dry_run:
            total = 0
            for number, (rule, count) in enumerate(pruner.dry_run(), start=1):
                total += count
                self.stdout.write(
                    f"Rule {number}: {describe_rule(rule)}: would delete {count} job(s)"
                )
            self.stdout.write(f"Dry run: nothing deleted ({total} job(s) in all).")
            return
        result = pruner.run_once()
        if result is None:
            self.stdout.write(
                self.style.WARNING("Another process is pruning right now; nothing was done.")
            )
            return
        for number, (rule, count) in enumerate(result, start=1):
            self.stdout.write(f"Rule {number}: {describe_rule(rule)}: deleted {count} job(s)")
        self.stdout.write(
            self.style.SUCCESS(f"Deleted {sum(count for _, count in result)} job(s).")
        )
