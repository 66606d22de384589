"""Enqueue: inserts in the caller's transaction, one by one or in bulk; uniqueness rules
(serialised by the engine's ``lock_slot``, then checked and applied with the ORM); and the one
job of a cron tick."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import IntegrityError

from ...conf import rexecutor_settings
from ...job import JobId
from ...models import CronTickRecord, JobRecord
from ...uniqueness import UniquenessCriteria
from ...validation import check_payloads
from ..values import EnqueuableJob
from .base import DjangoBase


class Enqueueing(DjangoBase):
    def enqueue(self, job: EnqueuableJob) -> JobId:
        criteria = job.uniqueness
        if criteria is None or criteria.disabled:
            return JobId(self.engine.insert(job, rexecutor_settings.MAX_PAYLOAD_BYTES))
        # Checked before the lock: a conflicting enqueue may write this data into another job.
        check_payloads(job, rexecutor_settings.MAX_PAYLOAD_BYTES)
        with self.engine.unique_transaction():
            return self._enqueue_unique(job, criteria)

    def enqueue_many(self, jobs: Sequence[EnqueuableJob]) -> list[JobId]:
        limit = rexecutor_settings.MAX_PAYLOAD_BYTES
        engine = self.engine
        if any(j.uniqueness is not None and not j.uniqueness.disabled for j in jobs):
            for job in jobs:  # all checked before anything is written
                check_payloads(job, limit)
            with engine.unique_transaction():
                return [
                    self._enqueue_unique(j, j.uniqueness)
                    if j.uniqueness is not None and not j.uniqueness.disabled
                    else JobId(engine.insert(j, limit))
                    for j in jobs
                ]
        if not jobs:
            return []
        return [JobId(i) for i in engine.insert_many(jobs, limit)]

    def _enqueue_unique(self, job: EnqueuableJob, criteria: UniquenessCriteria) -> JobId:
        """The duplicate check and the insert, inside the engine's ``unique_transaction``."""
        self.engine.lock_slot(criteria.lock_slot(job.executor))
        existing = self._find_duplicate(job, criteria)
        if existing is not None:
            self._apply_replace(existing, job, criteria)
            return JobId(existing.pk, inserted=False)
        return JobId(self.engine.insert(job, rexecutor_settings.MAX_PAYLOAD_BYTES))

    def _find_duplicate(self, job: EnqueuableJob, criteria: UniquenessCriteria) -> JobRecord | None:
        qs = self.jobs.filter(status__in=[s.value for s in criteria.statuses])
        if criteria.has_key:
            qs = qs.filter(unique_key=criteria.key_hash)
        if criteria.executor:
            qs = qs.filter(executor=job.executor)
        bounds = criteria.window_bounds(job.scheduled_at)
        if bounds is not None:
            qs = qs.filter(scheduled_at__range=bounds)
        return qs.select_for_update().order_by("id").first()

    def _apply_replace(
        self, existing: JobRecord, job: EnqueuableJob, criteria: UniquenessCriteria
    ) -> None:
        replace = criteria.on_conflict_replace
        if replace is None or existing.status not in replace.statuses:
            return
        for name in replace.fields:
            setattr(existing, name, getattr(job, name))
        existing.save(using=self.alias, update_fields=sorted(replace.fields))

    def enqueue_cron_job(self, name: str, tick_at: datetime, job: EnqueuableJob) -> JobId | None:
        """The tick's row and its job in one transaction: the row's unique (name, tick_at)
        lets one scheduler win; on PostgreSQL a concurrent insert of the same key waits for
        the winner to commit, then fails."""
        ticks = CronTickRecord.objects.using(self.alias)
        with self._atomic():
            try:
                # A savepoint, so losing the race leaves the outer transaction usable.
                with self._atomic():
                    record = ticks.create(name=name, tick_at=tick_at)
            except IntegrityError:
                return None
            job_id = self.enqueue(job)
            ticks.filter(pk=record.pk).update(job_id=int(job_id))
        return job_id
