"""Upkeep: pruning, cron tick records, locks for periodic work, worker heartbeats, and the
rescue of jobs whose worker went silent."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from ...models import (
    CronTickRecord,
    JobDependencyRecord,
    JobErrorRecord,
    JobQuerySet,
    WorkerRecord,
)
from ...status import TERMINAL_STATUSES, ErrorType, JobStatus
from ...transitions import (
    FINISH_FIELD,
    FINISHED_AT_FIELDS,
    UNSTARTED_ORPHAN,
    orphaned_error,
    rescue_gives_back,
    rescue_outcome,
    running_cancel_error,
    snoozed_status,
    unstarted_orphan_error,
)
from ..values import PruneRule, PruneSpec, WorkerInfo
from .base import DjangoBase, error_record
from .dependencies import release

#: When a finished job finished (the field its final status set).
FINISHED_AT = Coalesce(*FINISHED_AT_FIELDS)
#: What a rescue sets besides the status, to the time of the rescue.
_RESCUE_SETS = {
    JobStatus.RETRYABLE: "scheduled_at",  # due again at once
    JobStatus.DISCARDED: FINISH_FIELD[JobStatus.DISCARDED],
    JobStatus.CANCELLED: FINISH_FIELD[JobStatus.CANCELLED],
}


def _rescue_stamp(status: JobStatus, given_back: bool, now: datetime) -> dict[str, Any]:
    """The time field a rescue sets to ``now`` with ``status``."""
    return {"scheduled_at" if given_back else _RESCUE_SETS[status]: now}


def _rescue_changes(status: JobStatus, given_back: bool, now: datetime) -> dict[str, Any]:
    """Every field a rescue writes; a job given back unstarted gets its attempt back too."""
    changes: dict[str, Any] = {"status": status, **_rescue_stamp(status, given_back, now)}
    if given_back:
        changes["attempt"] = F("attempt") - 1
    return changes


class Upkeep(DjangoBase):
    #: Orphans rescued per transaction (``rescue_orphaned_jobs``).
    rescue_batch_size = 1000

    # -- pruning -------------------------------------------------------------------------
    def prune_jobs(self, spec: PruneSpec) -> int:
        return sum(self._prune_rule(rule, spec.batch_size) for rule in spec.rules)

    def count_prunable(self, rule: PruneRule) -> int:
        qs = self._rule_queryset(rule)
        if rule.max_age is not None:
            cutoff = timezone.now() - rule.max_age
            return int(self._closed(qs, cutoff).filter(aged_at__lt=cutoff).count())
        return max(0, int(self._closed(qs, None).count()) - (rule.max_length or 0))

    def _closed(self, qs: Any, cutoff: datetime | None) -> Any:
        """``qs`` without the steps of workflows that are unfinished (or, with a ``cutoff``,
        that finished at or after it): a workflow is pruned as a whole, once all of it is
        finished and old enough."""
        steps = self.jobs.filter(workflow_id__isnull=False)
        still_open = Q(~Q(status__in=sorted(TERMINAL_STATUSES)))
        if cutoff is not None:
            steps = steps.annotate(rx_finished=FINISHED_AT)
            still_open |= Q(rx_finished__gte=cutoff)
        return qs.exclude(workflow_id__in=steps.filter(still_open).values("workflow_id"))

    def _forget_edges(self, step_ids: Sequence[int]) -> None:
        """Delete the dependency rows of the deleted steps among ``step_ids``."""
        edges = JobDependencyRecord.objects.using(self.alias)
        kept = set(self.jobs.filter(pk__in=step_ids).values_list("pk", flat=True))
        gone = [pk for pk in step_ids if pk not in kept]
        if gone:
            edges.filter(Q(job_id__in=gone) | Q(depends_on_id__in=gone)).delete()

    def _rule_queryset(self, rule: PruneRule) -> Any:
        # Any: the stubs cannot type the queryset's ``aged_at`` annotation.
        qs = self.jobs.filter(status=rule.status)
        if rule.only is not None:
            qs = qs.filter(executor__in=sorted(rule.only))
        if rule.except_ is not None:
            qs = qs.exclude(executor__in=sorted(rule.except_))
        if rule.status in TERMINAL_STATUSES:
            return qs.annotate(aged_at=FINISHED_AT)
        return qs.annotate(aged_at=F("scheduled_at"))

    def _prune_rule(self, rule: PruneRule, batch_size: int) -> int:
        qs = self._rule_queryset(rule)
        deleted = 0
        while True:
            # The steps of open workflows are left out when choosing the ids; the DELETE
            # re-checks only the rule's own conditions (a subquery on the table it deletes
            # from is not portable), so only a rerun racing this batch could slip through.
            if rule.max_age is not None:
                cutoff = timezone.now() - rule.max_age
                bound = Q(aged_at__lt=cutoff)
                ids = list(
                    self._closed(qs, cutoff)
                    .filter(bound)
                    .order_by("id")
                    .values_list("pk", flat=True)[:batch_size]
                )
            else:
                newest_first = self._closed(qs, None).order_by(
                    F("aged_at").desc(nulls_last=True), "-id"
                )
                keep = rule.max_length or 0
                rows = list(newest_first.values_list("pk", "aged_at")[keep : keep + batch_size])
                ids = [pk for pk, _ in rows]
                # A job of the batch that finished again meanwhile is newer than the batch's
                # newest: it is among the ones to keep now, so the delete must skip it.
                newest = rows[0][1] if rows else None
                bound = Q(aged_at__isnull=True)
                if newest is not None:
                    bound |= Q(aged_at__lte=newest)
            if not ids:
                return deleted
            step_ids = list(
                self.jobs.filter(pk__in=ids, workflow_id__isnull=False).values_list("pk", flat=True)
            )
            removed = self.delete_jobs(ids, qs.filter(bound))
            if step_ids:
                self._forget_edges(step_ids)
            if not removed:
                # Every job of the batch changed meanwhile; the next run carries on.
                return deleted
            deleted += removed

    def delete_jobs(self, ids: Sequence[int], covered: JobQuerySet) -> int:
        """Delete the jobs among ``ids`` that the queryset ``covered`` still matches, with
        their errors, in one short transaction; returns how many jobs went.

        The DELETE itself carries ``covered``'s conditions (status, executors, age), so a job
        that changed after its id was selected (rerun and claimed by a worker, finished again)
        is left alone. Django's cascade collector is bypassed: it would load every error row."""
        query = covered.query
        where, params = query.get_compiler(self.alias).compile(query.where)
        return self.engine.delete_jobs([int(i) for i in ids], where, params)

    # -- periodic work -------------------------------------------------------------------
    def prune_cron_ticks(self, before: datetime) -> int:
        deleted, _ = CronTickRecord.objects.using(self.alias).filter(tick_at__lt=before).delete()
        return int(deleted)

    def try_lock(self, name: str) -> AbstractContextManager[bool]:
        return self.engine.try_lock(name)

    # -- workers -------------------------------------------------------------------------
    def record_heartbeat(
        self,
        worker_id: str,
        *,
        executors: Collection[str],
        concurrency: int,
        running: Collection[int] = (),
    ) -> None:
        workers = WorkerRecord.objects.using(self.alias)
        fields = {"heartbeat_at": Now(), "running": sorted(running)}
        if workers.filter(pk=worker_id).update(**fields):
            return
        # The first row too is stamped by the database's clock: a row written with a host's
        # clock that runs behind would look dead to rescue at once.
        workers.create(
            worker_id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            executors=sorted(executors),
            concurrency=concurrency,
            started_at=Now(),
            heartbeat_at=Now(),
            running=sorted(running),
        )

    def remove_worker(self, worker_id: str) -> None:
        WorkerRecord.objects.using(self.alias).filter(pk=worker_id).delete()

    def live_workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                worker_id=w.worker_id,
                hostname=w.hostname,
                pid=w.pid,
                executors=list(w.executors),
                concurrency=w.concurrency,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                running=list(w.running),
            )
            for w in WorkerRecord.objects.using(self.alias).order_by("-heartbeat_at")
        ]

    def rescue_orphaned_jobs(self, after: timedelta) -> list[int]:
        """Rescue in batches of ``rescue_batch_size``, each one short transaction of a few
        set-based statements, so a big rescue never holds many locks or much memory at once."""
        workers = WorkerRecord.objects.using(self.alias)
        rescued: list[int] = []
        while True:
            read, batch = self._rescue_batch(after)
            rescued += batch
            if read < self.rescue_batch_size:
                break
        workers.filter(heartbeat_at__lt=Now() - after).delete()
        return rescued

    def record_claimed_ahead(self, worker_id: str, job_ids: Collection[int]) -> None:
        self.engine.record_ahead(worker_id, job_ids)

    def _unstarted_orphans(self, rows: Sequence[tuple[Any, ...]]) -> set[int]:
        """Of the orphans read by ``_rescue_batch``, the ids to give back with their attempt
        unused (``rescue_gives_back``)."""
        dead = {row[3] for row in rows if row[3] is not None}
        ahead = {
            worker_id: set(ids)
            for worker_id, ids in WorkerRecord.objects.using(self.alias)
            .filter(worker_id__in=dead)
            .values_list("worker_id", "ahead")
        }
        candidates = {row[0]: row[1] for row in rows if row[0] in ahead.get(row[3], ())}
        if not candidates:
            return set()
        before = set(
            self.errors.filter(
                job_id__in=list(candidates),
                error_type=ErrorType.ORPHANED,
                message__startswith=UNSTARTED_ORPHAN,
            ).values_list("job_id", "attempt")
        )
        return {
            row[0]
            for row in rows
            if rescue_gives_back(
                row[0] in candidates, row[4] is not None, (row[0], row[1]) in before
            )
        }

    def _rescue_batch(self, after: timedelta) -> tuple[int, list[int]]:
        """Rescue up to ``rescue_batch_size`` orphans: how many were read, and the ids of
        those rescued."""
        workers = WorkerRecord.objects.using(self.alias)
        # Compare in the database's clock, so skewed worker clocks cannot rescue live jobs.
        alive = workers.filter(heartbeat_at__gte=Now() - after).values("worker_id")
        orphans = self.jobs.filter(status=JobStatus.EXECUTING).filter(
            Q(claimed_by__isnull=True) | ~Q(claimed_by__in=alive)
        )
        with self._atomic():
            # Locked rows cannot change until this transaction ends; rows another rescuer
            # holds are skipped (it rescues them). No ORDER BY, so the partial index of
            # running jobs serves the scan however big the table is.
            rows = list(
                orphans.select_for_update(skip_locked=True)
                .order_by()
                .values_list(
                    "pk",
                    "attempt",
                    "max_attempts",
                    "claimed_by",
                    "cancel_requested_at",
                    "cancel_reason",
                    "workflow_id",
                )[: self.rescue_batch_size]
            )
            if not rows:
                return 0, []
            # The database's clock, as for every time a backend writes.
            now = self.current_time()
            unstarted = self._unstarted_orphans(rows)
            #: (status, given back with the attempt unused) → ids.
            outcomes: dict[tuple[JobStatus, bool], list[int]] = {}
            claims: dict[tuple[str | None, int], list[int]] = {}
            errors: list[JobErrorRecord] = []
            steps = {row[0] for row in rows if row[-1] is not None}
            for job_id, attempt, max_attempts, worker_id, cancel_requested_at, reason, _ in rows:
                claims.setdefault((worker_id, attempt), []).append(job_id)
                if job_id in unstarted:
                    outcomes.setdefault((snoozed_status(attempt - 1), True), []).append(job_id)
                    error = unstarted_orphan_error(worker_id, attempt)
                else:
                    status = rescue_outcome(attempt, max_attempts, cancel_requested_at is not None)
                    outcomes.setdefault((status, False), []).append(job_id)
                    error = (
                        running_cancel_error(reason)
                        if status == JobStatus.CANCELLED
                        else orphaned_error(worker_id, attempt)
                    )
                errors.append(error_record(job_id, attempt, error, now))
            # Fenced by (id, attempt, claimed_by) like any result write: one IN list per
            # dead worker and attempt, so the statement stays small.
            fence = Q()
            for (worker_id, attempt), ids in claims.items():
                fence |= Q(pk__in=ids, attempt=attempt, claimed_by=worker_id)
            running = self.jobs.filter(fence, status=JobStatus.EXECUTING)
            written = sum(
                running.filter(pk__in=ids).update(**_rescue_changes(status, back, now))
                for (status, back), ids in outcomes.items()
            )
            done = [row[0] for row in rows]
            if written != len(rows):
                # Only possible without row locks (SQLite): a job changed after it was read,
                # and the fence left it alone. Find the ones written.
                done = [
                    pk
                    for (status, back), ids in outcomes.items()
                    for pk in self.jobs.filter(
                        pk__in=ids, status=status, **_rescue_stamp(status, back, now)
                    ).values_list("pk", flat=True)
                ]
                written_ids = set(done)
                errors = [e for e in errors if e.job_id in written_ids]
            self.errors.bulk_create(errors)
            written_steps = steps.intersection(done)
            finished = {
                pk: status
                for (status, _), ids in outcomes.items()
                if status in TERMINAL_STATUSES
                for pk in ids
                if pk in written_steps
            }
            if finished:
                release(self, finished)
        return len(rows), done
