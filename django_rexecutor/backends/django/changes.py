"""Changes someone asks for: cancel, rerun and update of one job, and the bulk forms of cancel
and rerun (few statements per batch of ids, each batch one transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import F
from django.db.models.functions import Now

from ...encoding import to_json_native
from ...exceptions import JobNotFound
from ...job import Job, storable_text
from ...models import JobRecord
from ...status import TERMINAL_STATUSES, JobStatus
from ...transitions import (
    CANCELLABLE,
    RERUNNABLE,
    SkipReason,
    cancel_error,
    check_cancel,
    check_rerun,
    check_update,
    finish_changes,
    rerun_changes,
    rerun_status,
    skip_reason,
)
from ...validation import check_aware, check_max_attempts, check_priority, check_tags
from ..values import BulkResult
from .base import error_record
from .dependencies import release, reopen
from .reading import Reading


class Changing(Reading):
    def _locked(self, job_id: int, executor: str | None) -> JobRecord:
        record = self.jobs.select_for_update().filter(pk=job_id).first()
        if record is None or (executor is not None and record.executor != executor):
            raise JobNotFound(job_id, f"for executor {executor!r}." if executor else "")
        return record

    def cancel_job(self, job_id: int, reason: str, *, executor: str | None = None) -> Job:
        reason = storable_text(reason)
        with self._atomic():
            record = self._locked(job_id, executor)
            status = JobStatus(record.status)
            now = Now()
            check_cancel(job_id, status)
            if status == JobStatus.EXECUTING:
                if record.cancel_requested_at is None:
                    self.jobs.filter(pk=job_id).update(
                        cancel_requested_at=now, cancel_reason=reason
                    )
            else:
                self.jobs.filter(pk=job_id).update(**finish_changes(JobStatus.CANCELLED, now))
                self._add_error(job_id, record.attempt, cancel_error(reason), now)
                if record.workflow_id is not None:
                    release(self, {job_id: JobStatus.CANCELLED})
            return self._fresh(job_id)

    def rerun_job(self, job_id: int, *, executor: str | None = None) -> Job:
        with self._atomic():
            record = self._locked(job_id, executor)
            check_rerun(job_id, JobStatus(record.status))
            self.jobs.filter(pk=job_id).update(
                **rerun_changes(record.attempt, max_attempts=F("max_attempts") + 1, now=Now())
            )
            if record.workflow_id is not None and record.status in TERMINAL_STATUSES:
                reopen(self, [job_id])
            return self._fresh(job_id)

    #: Ids handled per transaction by the bulk operations (well under SQLite's variable limit).
    bulk_batch_size = 500

    def _bulk_rows(
        self, ids: Sequence[int], executor: str | None
    ) -> dict[int, tuple[JobStatus, int, bool]]:
        """(status, attempt, whether it is a workflow step) of the jobs among ``ids`` (of
        ``executor``), locked."""
        qs = self.jobs.select_for_update().filter(pk__in=ids)
        if executor is not None:
            qs = qs.filter(executor=executor)
        return {
            pk: (JobStatus(status), attempt, workflow_id is not None)
            for pk, status, attempt, workflow_id in qs.values_list(
                "pk", "status", "attempt", "workflow_id"
            )
        }

    def rerun_jobs(self, job_ids: Iterable[int], *, executor: str | None = None) -> BulkResult:
        ids = list(dict.fromkeys(int(i) for i in job_ids))
        done: list[int] = []
        skipped: dict[int, str] = {}
        for start in range(0, len(ids), self.bulk_batch_size):
            chunk = ids[start : start + self.bulk_batch_size]
            with self._atomic():
                rows = self._bulk_rows(chunk, executor)
                # Jobs whose rerun writes the same values (one of their attempt counts, and
                # their ids): one statement per status they go back to.
                by_status: dict[JobStatus, tuple[int, list[int]]] = {}
                for pk in chunk:
                    if pk not in rows:
                        skipped[pk] = SkipReason.NOT_FOUND
                        continue
                    status, attempt, _ = rows[pk]
                    if status not in RERUNNABLE:
                        skipped[pk] = skip_reason(status)
                        continue
                    by_status.setdefault(rerun_status(attempt), (attempt, []))[1].append(pk)
                    done.append(pk)
                now = Now()
                for attempt, pks in by_status.values():
                    self.jobs.filter(pk__in=pks).update(
                        **rerun_changes(attempt, max_attempts=F("max_attempts") + 1, now=now)
                    )
                reopened = [
                    pk
                    for _, pks in by_status.values()
                    for pk in pks
                    if rows[pk][2] and rows[pk][0] in TERMINAL_STATUSES
                ]
                if reopened:
                    reopen(self, reopened)
        return BulkResult(tuple(done), skipped)

    def cancel_jobs(
        self, job_ids: Iterable[int], reason: str, *, executor: str | None = None
    ) -> BulkResult:
        reason = storable_text(reason)
        ids = list(dict.fromkeys(int(i) for i in job_ids))
        done: list[int] = []
        requested: list[int] = []
        skipped: dict[int, str] = {}
        for start in range(0, len(ids), self.bulk_batch_size):
            chunk = ids[start : start + self.bulk_batch_size]
            with self._atomic():
                rows = self._bulk_rows(chunk, executor)
                waiting: list[tuple[int, int]] = []
                running: list[int] = []
                for pk in chunk:
                    if pk not in rows:
                        skipped[pk] = SkipReason.NOT_FOUND
                        continue
                    status, attempt, _ = rows[pk]
                    if status not in CANCELLABLE:
                        skipped[pk] = skip_reason(status)
                    elif status == JobStatus.EXECUTING:
                        running.append(pk)
                    else:
                        waiting.append((pk, attempt))
                    if pk not in skipped:
                        done.append(pk)
                now = Now()
                if waiting:
                    self.jobs.filter(pk__in=[pk for pk, _ in waiting]).update(
                        **finish_changes(JobStatus.CANCELLED, now)
                    )
                    error = cancel_error(reason)
                    self.errors.bulk_create(
                        error_record(pk, attempt, error, now) for pk, attempt in waiting
                    )
                    cancelled = {pk: JobStatus.CANCELLED for pk, _ in waiting if rows[pk][2]}
                    if cancelled:
                        release(self, cancelled)
                if running:
                    self.jobs.filter(pk__in=running, cancel_requested_at__isnull=True).update(
                        cancel_requested_at=now, cancel_reason=reason
                    )
                    requested += running
        return BulkResult(tuple(done), skipped, tuple(requested))

    def update_job(self, job: Job, *, executor: str | None = None) -> Job:
        fields = {
            "data": to_json_native(job.data, what="data"),
            "metadata": to_json_native(job.metadata, what="metadata"),
            "max_attempts": check_max_attempts(job.max_attempts),
            "priority": check_priority(job.priority),
            "tags": check_tags(job.tags),
            "scheduled_at": check_aware(job.scheduled_at, name="scheduled_at"),
        }
        with self._atomic():
            record = self._locked(job.id, executor)
            check_update(job.id, JobStatus(record.status))
            self.jobs.filter(pk=job.id).update(**fields)
            return self._fresh(job.id)
