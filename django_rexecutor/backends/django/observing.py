"""Observability reads and writes: progress reports, job counts per status, queue lag.

Counting stays cheap on a table of millions of rows: waiting and running jobs (the queue) are
counted exactly through the status indexes; once the engine's planner estimate says the table
holds more than ``ESTIMATE_THRESHOLD`` rows, finished jobs are counted in a sample of about
``SAMPLE_ROWS`` rows scaled up (engines without estimates or sampling count exactly)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, DateTimeField, Min, Value
from django.db.models.functions import Greatest, Least, Now

from ...status import READY_STATUSES, TERMINAL_STATUSES, JobStatus
from ...transitions import FINISH_FIELD
from ..values import Claim, JobCounts
from .base import DjangoBase
from .reading import EARLIEST, LATEST

#: Above this many rows (the planner's estimate), finished jobs are counted in a sample.
ESTIMATE_THRESHOLD = 100_000
#: About how many rows that sample reads.
SAMPLE_ROWS = 20_000
WAITING_OR_RUNNING = sorted(s.value for s in JobStatus if s not in TERMINAL_STATUSES)
FINISHED = frozenset(s.value for s in TERMINAL_STATUSES)


class Observing(DjangoBase):
    def report_progress(self, claim: Claim, progress: float, note: str = "") -> bool:
        written = self.jobs.filter(
            pk=claim.job_id,
            status=JobStatus.EXECUTING,
            attempt=claim.attempt,
            claimed_by=claim.worker_id,
        ).update(progress=progress, progress_note=note, progress_at=Now())
        return bool(written)

    def job_counts(self) -> JobCounts:
        table_rows = self.engine.estimated_job_rows()
        estimate = table_rows is not None and table_rows >= ESTIMATE_THRESHOLD
        sampled = None
        if estimate:
            percent = min(100.0, 100.0 * SAMPLE_ROWS / max(table_rows or 1, 1))
            sampled = self.engine.sampled_job_counts(percent)
        counted = (
            self.jobs.filter(status__in=WAITING_OR_RUNNING) if sampled is not None else self.jobs
        )
        grouped = counted.order_by().values_list("executor", "status").annotate(n=Count("*"))
        counts: dict[tuple[str, str], int] = {(e, s): n for e, s, n in grouped}
        if sampled is None:
            return JobCounts(counts)
        total = sum(n for _, _, n in sampled)
        scale = (table_rows or 0) / total if total else 0.0
        for executor, status, n in sampled:
            if status in FINISHED:
                counts[(executor, status)] = round(n * scale)
        return JobCounts(counts, estimated=FINISHED)

    def oldest_ready_at(self) -> dict[str, datetime]:
        # Clamped as in ``next_scheduled_at``: a hand-written ``-infinity`` is simply old.
        due = Greatest(Least("scheduled_at", Value(LATEST)), Value(EARLIEST))
        rows = (
            self.jobs.filter(status__in=sorted(READY_STATUSES), scheduled_at__lte=Now())
            .order_by()
            .values_list("executor")
            .annotate(oldest=Min(due, output_field=DateTimeField()))
        )
        return {executor: oldest for executor, oldest in rows}

    def finished_since(self, since: datetime) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        # One count per final status, each through the status index and its own time field.
        for status, at_field in FINISH_FIELD.items():
            rows = (
                self.jobs.filter(status=status, **{f"{at_field}__gte": since})
                .order_by()
                .values_list("executor")
                .annotate(n=Count("*"))
            )
            for executor, n in rows:
                counts[(executor, status.value)] = n
        return counts
