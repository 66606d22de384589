"""``manage.py rexecutor_demo``: enqueue a mix of example jobs, run a real worker in burst mode
until they are settled, and print what happened to each."""

from __future__ import annotations

import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_rexecutor import Job, JobStatus, Where
from django_rexecutor.backends import get_backend
from django_rexecutor.status import TERMINAL_STATUSES

from ...jobs import (
    ChargeCard,
    CleanupAccount,
    FetchExchangeRates,
    FlakyImport,
    SendWelcomeEmail,
    WaitForStock,
)

_EXPECTED = {
    SendWelcomeEmail.name: "completes on its first attempt",
    FlakyImport.name: "fails once, retried, completes",
    ChargeCard.name: "typed error on every attempt, then discarded",
    WaitForStock.name: "snoozes once (attempt given back), then completes",
    CleanupAccount.name: "cancels itself",
    FetchExchangeRates.name: "async def, completes",
}


class Command(BaseCommand):
    help = "Enqueue example jobs, run them through a real worker and print the outcomes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="Give up after this many seconds."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids = self._enqueue()
        self.stdout.write(f"Enqueued {len(ids)} jobs; running a worker in burst mode...\n")
        deadline = time.monotonic() + options["timeout"]
        while True:
            call_command(
                "rexecutor_worker",
                executor=list(_EXPECTED),
                burst=True,
                no_cron=True,
                no_pruner=True,
                concurrency=4,
                verbosity=options["verbosity"],
                stdout=self.stdout,
                stderr=self.stderr,
            )
            jobs = get_backend().query(Where.id_in(ids))
            waiting = [j for j in jobs if j.status not in TERMINAL_STATUSES]
            if not waiting or time.monotonic() > deadline:
                break
            # Retries and snoozes fall due a moment later: wait for them and run again.
            due = min(j.scheduled_at for j in waiting)
            time.sleep(min(2.0, max(0.05, (due - timezone.now()).total_seconds())))
            self.stdout.write(
                f"\n{len(waiting)} job(s) retried or snoozed and now due: running the worker again\n"
            )
        self._print_table(jobs)

    def _enqueue(self) -> list[int]:
        return [
            SendWelcomeEmail.enqueue({"user_id": 42}),
            SendWelcomeEmail.enqueue({"user_id": 43}, priority=1),
            FlakyImport.enqueue({"feed": "https://example.com/feed.csv"}),
            ChargeCard.enqueue({"last4": "4242", "amount": 1999}),
            WaitForStock.enqueue({"sku": "BLUE-MUG"}),
            CleanupAccount.enqueue({"account": 7}),
            FetchExchangeRates.enqueue({"base": "EUR"}),
        ]

    def _print_table(self, jobs: list[Job]) -> None:
        rows = [("id", "executor", "status", "attempts", "errors", "expected")]
        for job in sorted(jobs, key=lambda j: j.id):
            errors = ", ".join(e.error_type for e in job.errors) or "-"
            rows.append(
                (
                    str(job.id),
                    job.executor,
                    job.status.value,
                    f"{job.attempt}/{job.max_attempts}",
                    errors,
                    _EXPECTED.get(job.executor, ""),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self.stdout.write("")
        for index, row in enumerate(rows):
            line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
            style = self.style.MIGRATE_HEADING if index == 0 else self._style_for(row[2])
            self.stdout.write(style(line))
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.status.value] = counts.get(job.status.value, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self.stdout.write(f"\n{len(jobs)} jobs: {summary}")

    def _style_for(self, status: str) -> Any:
        if status == JobStatus.COMPLETE:
            return self.style.SUCCESS
        if status in (JobStatus.DISCARDED, JobStatus.CANCELLED):
            return self.style.WARNING
        return self.style.NOTICE
