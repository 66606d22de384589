"""``manage.py rexecutor_cron``: the configured cron entries and when they next run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ...exceptions import ConfigurationError
from ...plugins.cron import load_entries


def _moment(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--now {value!r} is not an ISO 8601 date and time.")
    if timezone.is_naive(parsed):
        raise CommandError(f"--now {value!r} needs a UTC offset, e.g. 2025-01-15T07:00:00+00:00.")
    return parsed


class Command(BaseCommand):
    help = (
        'List the cron entries of REXECUTOR["CRON"] with a description of each schedule and '
        "its next run times in the entry's time zone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, default=3, help="How many upcoming runs to show (default 3)."
        )
        parser.add_argument(
            "--now",
            type=_moment,
            default=None,
            help="Compute the runs after this ISO 8601 moment instead of now.",
        )

    def handle(self, *args: Any, count: int, now: datetime | None, **options: Any) -> None:
        if count < 1:
            raise CommandError("--count must be at least 1.")
        try:
            entries = load_entries()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if not entries:
            self.stdout.write('No cron entries are configured (REXECUTOR["CRON"] is empty).')
            return
        start = now or timezone.now()
        for index, entry in enumerate(entries):
            if index:
                self.stdout.write("")
            schedule = entry.schedule
            self.stdout.write(self.style.MIGRATE_HEADING(entry.name))
            self.stdout.write(f"  executor:   {entry.executor}")
            self.stdout.write(f"  schedule:   {schedule.expression} ({schedule.describe()})")
            self.stdout.write(f"  time zone:  {schedule.zone_name}")
            for number, tick in enumerate(schedule.upcoming(start, count)):
                label = "next runs:" if number == 0 else ""
                local = tick.astimezone(schedule.zone)
                self.stdout.write(
                    f"  {label:<11} {local:%Y-%m-%d %H:%M:%S %Z} ({tick:%Y-%m-%d %H:%M:%S} UTC)"
                )
