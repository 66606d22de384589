"""The worker's side: claims, fenced result writes, batched completion, giving claimed jobs
back, and polling cancel requests.

The claim and the batched completion are one statement each (the engine's ``claim`` and
``complete``) whose rows become ``Job`` values directly: model instances cost more than the
statements. Every result write is fenced by status, attempt and worker (see ``backends.base``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import F, Q
from django.db.models.functions import Now

from ...exceptions import JobNotFound
from ...job import ErrorDetails, Job
from ...limits import Limits
from ...status import TERMINAL_STATUSES, ErrorType, JobStatus
from ...transitions import finish_changes, running_cancel_error, snoozed_status
from ..values import Claim
from .dependencies import release
from .flow import FlowControl, limited
from .reading import Reading
from .rows import job_from_row, unreadable_message

logger = logging.getLogger("django_rexecutor.backends")


class Claiming(FlowControl, Reading):
    def claim_jobs(
        self,
        worker_id: str,
        capacity: Mapping[str, int],
        limit: int,
        *,
        limits: Mapping[str, Limits] | None = None,
    ) -> list[Job]:
        wanted = {name: min(n, limit) for name, n in capacity.items() if n > 0}
        if limit <= 0 or not wanted:
            return []
        rows: list[Any] = []
        # Limited executors first, each in its own short transaction (see ``flow``); the
        # others in the engine's one statement, with the slots left.
        for name, lim in limited(wanted, limits).items():
            del wanted[name]
            if len(rows) < limit and self.has_due_jobs(name):
                rows += self.claim_limited(
                    worker_id, name, min(capacity[name], limit - len(rows)), lim
                )
        if wanted and len(rows) < limit:
            left = limit - len(rows)
            rows += self.engine.claim(worker_id, {n: min(w, left) for n, w in wanted.items()}, left)
        with_errors = [row[0] for row in rows if row[-1]]
        errors = self._errors_of(with_errors) if with_errors else {}
        connection = connections[self.alias]
        jobs: list[Job] = []
        for row in rows:
            job = job_from_row(row, errors, connection)
            if job.unreadable:
                self._discard_unreadable(job)
            else:
                jobs.append(job)
        jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
        return jobs

    def _discard_unreadable(self, job: Job) -> None:
        """A claimed row that cannot become a ``Job`` fails alone and for good (retrying
        cannot fix it): discarded under this claim, with an error naming the bad fields.
        The jobs claimed with it run normally."""
        problem = unreadable_message(job)
        error = ErrorDetails(ErrorType.UNREADABLE, problem)
        logger.error(
            "Job %s (%s) attempt %s discarded: %s", job.id, job.executor, job.attempt, problem
        )
        try:
            self.mark_job_discarded(job.id, error, claim=Claim.of(job))
        except DatabaseError:
            # The good jobs of this claim must still run; the rescue pass returns this one.
            logger.exception("Could not discard job %s", job.id)

    # -- results -------------------------------------------------------------------------
    def _write_result(
        self,
        job_id: int,
        claim: Claim | None,
        updates: dict[str, Any],
        error: ErrorDetails | None,
    ) -> bool:
        """Apply ``updates`` to the job if it is still executing under ``claim``; a job whose
        cancellation was requested becomes cancelled instead."""
        with self._atomic():
            qs = self.jobs.filter(pk=job_id, status=JobStatus.EXECUTING)
            if claim is not None:
                qs = qs.filter(attempt=claim.attempt, claimed_by=claim.worker_id)
            row = (
                qs.select_for_update()
                .values("attempt", "cancel_requested_at", "cancel_reason", "workflow_id")
                .first()
            )
            if row is None:
                if not self.jobs.filter(pk=job_id).exists():
                    raise JobNotFound(job_id)
                return False
            now = Now()
            if row["cancel_requested_at"] is not None:
                updates = finish_changes(JobStatus.CANCELLED, now)
                error = running_cancel_error(row["cancel_reason"])
            self.jobs.filter(pk=job_id).update(**updates)
            if error is not None:
                self._add_error(job_id, row["attempt"], error, now)
            status = updates["status"]
            if row["workflow_id"] is not None and status in TERMINAL_STATUSES:
                # The step's dependents learn of it in this transaction.
                release(self, {job_id: JobStatus(status)})
            return True

    def mark_job_complete(
        self, job_id: int, *, claim: Claim | None = None, result: Any = None
    ) -> bool:
        updates = {**finish_changes(JobStatus.COMPLETE, Now()), "result": result}
        return self._write_result(job_id, claim, updates, None)

    def mark_job_retryable(
        self,
        job_id: int,
        next_scheduled_at: datetime,
        error: ErrorDetails,
        *,
        claim: Claim | None = None,
    ) -> bool:
        updates = {"status": JobStatus.RETRYABLE, "scheduled_at": next_scheduled_at}
        return self._write_result(job_id, claim, updates, error)

    def mark_job_discarded(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        return self._write_result(job_id, claim, finish_changes(JobStatus.DISCARDED, Now()), error)

    def mark_job_cancelled(
        self, job_id: int, error: ErrorDetails, *, claim: Claim | None = None
    ) -> bool:
        return self._write_result(job_id, claim, finish_changes(JobStatus.CANCELLED, Now()), error)

    def mark_job_snoozed(
        self, job_id: int, next_scheduled_at: datetime, *, claim: Claim | None = None
    ) -> bool:
        return self._give_back(job_id, next_scheduled_at, claim)

    def _give_back(self, job_id: int, at: datetime | Now, claim: Claim | None) -> bool:
        attempt = self.jobs.filter(pk=job_id).values_list("attempt", flat=True).first()
        if attempt is None:
            raise JobNotFound(job_id)
        updates = {
            "status": snoozed_status(attempt - 1),
            "attempt": F("attempt") - 1,
            "scheduled_at": at,
        }
        return self._write_result(job_id, claim, updates, None)

    def complete_jobs(self, claims: Sequence[Claim]) -> int:
        if not claims:
            return 0
        # Fenced by (id, attempt, worker), skipping cancel-requested jobs and workflow steps.
        completed = self.engine.complete(claims)
        rest = [c for c in claims if c.job_id not in completed]
        if rest:
            # Workflow steps: completed and their dependents released in one transaction.
            completed |= self._complete_steps(rest)
        written = len(completed)
        # The rest were cancelled meanwhile, are stale or gone: settle them one by one.
        for c in rest:
            if c.job_id not in completed:
                with contextlib.suppress(JobNotFound):
                    written += self.mark_job_complete(c.job_id, claim=c)
        return written

    def _complete_steps(self, claims: Sequence[Claim]) -> set[int]:
        """Complete the workflow steps among ``claims`` still executing under them (no cancel
        requested), and release their dependents, in one transaction; the ids written.
        Vendor-neutral: the fenced rows are locked, then updated by id."""
        fence = Q()
        by_claim: dict[tuple[str, int], list[int]] = {}
        for c in claims:
            by_claim.setdefault((c.worker_id, c.attempt), []).append(c.job_id)
        for (worker_id, attempt), ids in by_claim.items():
            fence |= Q(pk__in=ids, attempt=attempt, claimed_by=worker_id)
        with self._atomic():
            ids = list(
                self.jobs.select_for_update()
                .filter(
                    fence,
                    status=JobStatus.EXECUTING,
                    cancel_requested_at__isnull=True,
                    workflow_id__isnull=False,
                )
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if ids:
                self.jobs.filter(pk__in=ids).update(**finish_changes(JobStatus.COMPLETE, Now()))
                release(self, dict.fromkeys(ids, JobStatus.COMPLETE))
        return set(ids)

    def release_jobs(self, claims: Sequence[Claim]) -> int:
        released = 0
        for c in claims:
            with contextlib.suppress(JobNotFound):
                released += self._give_back(c.job_id, Now(), c)
        return released

    def release_unseen_claims(self, worker_id: str, known: Collection[int]) -> list[int]:
        keep = set(known)
        # Few rows: the jobs a worker runs, plus those of one lost claim.
        executing = self.jobs.filter(status=JobStatus.EXECUTING, claimed_by=worker_id)
        unseen = [
            Claim(pk, attempt, worker_id)
            for pk, attempt in executing.values_list("pk", "attempt")
            if pk not in keep
        ]
        return [c.job_id for c in unseen if self.release_jobs([c])]

    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        if not job_ids:
            return set()
        return set(
            self.jobs.filter(pk__in=list(job_ids), cancel_requested_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
