"""``manage.py rexecutor_pause NAME…`` (or ``--all``): pause executors cluster-wide."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import registry
from ...backends import get_backend
from ...backends.base import Backend


class Command(BaseCommand):
    help = (
        "Pause executors across every worker: running jobs finish, no worker claims their "
        "jobs until rexecutor_resume. The state is stored in the database."
    )
    #: What the command does, for its messages.
    verb = "pause"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="Executor names.")
        parser.add_argument(
            "--all",
            action="store_true",
            help=f"{self.verb.capitalize()} every registered executor.",
        )

    def handle(self, *args: Any, names: list[str], all: bool, **options: Any) -> None:
        known = registry.all_executors()
        if all == bool(names):
            raise CommandError(f"Name the executors to {self.verb}, or give --all (not both).")
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise CommandError(
                f"Unknown executor name(s): {', '.join(map(repr, unknown))}. Registered: "
                f"{', '.join(sorted(known)) or 'none'}."
            )
        chosen = sorted(known) if all else sorted(set(names))
        backend = get_backend()
        self.apply(backend, chosen)
        paused = backend.paused_executors()
        for name in chosen:
            self.stdout.write(f"{name}: {'paused' if name in paused else 'running'}")
        self.stdout.write(
            self.style.SUCCESS(f"{self.verb.capitalize()}d {len(chosen)} executor(s).")
        )

    def apply(self, backend: Backend, names: list[str]) -> None:
        backend.pause_executors(names)
