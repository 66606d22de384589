"""Database tables: jobs, their error history, live workers, cron ticks and uniqueness locks.

The ORM classes are named ``*Record`` so they never clash with the ``Job`` value that executors
receive (``django_rexecutor.Job``)."""

from __future__ import annotations

import pgtrigger
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .encoding import CanonicalJSONEncoder
from .fields import TagsField
from .notifiers.base import CANCEL_CHANNEL, JOBS_CHANNEL
from .status import ERROR_TYPE_MAX_LENGTH, READY_STATUSES, TERMINAL_STATUSES, JobStatus
from .transitions import CANCELLABLE, FINISHED_AT_FIELDS, RERUNNABLE, UPDATABLE

#: ``JobRecord``'s timestamp and JSON columns (the raw reads cast and decode them per row).
TIMESTAMP_FIELDS = (
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "cancelled_at",
    "discarded_at",
    "cancel_requested_at",
)
JSON_FIELDS = ("data", "metadata", "tags", "result")

_READY_SQL = ", ".join(f"'{s.value}'" for s in sorted(READY_STATUSES))

# One NOTIFY per executor per statement (not per row), so bulk inserts stay cheap; PostgreSQL
# delivers it when the transaction commits and folds duplicates within a transaction.
_NOTIFY_READY = f"""
    PERFORM pg_notify('{JOBS_CHANNEL}', ready.executor)
       FROM (SELECT DISTINCT executor FROM new_rows
              WHERE status IN ({_READY_SQL}) AND scheduled_at <= now()) AS ready;
"""
_NOTIFY_CANCEL = f"""
    PERFORM pg_notify('{CANCEL_CHANNEL}', new_rows.id::text)
       FROM new_rows
      WHERE status = '{JobStatus.EXECUTING.value}' AND cancel_requested_at IS NOT NULL;
"""


class JobQuerySet(models.QuerySet["JobRecord"]):
    """Jobs by state, with the statuses of ``status`` and the rules of ``transitions``."""

    def ready(self) -> JobQuerySet:
        return self.filter(status__in=READY_STATUSES, scheduled_at__lte=timezone.now())

    def waiting(self) -> JobQuerySet:
        """Scheduled or retryable jobs, due or not (not the workflow status ``waiting``:
        see ``blocked()``)."""
        return self.filter(status__in=READY_STATUSES)

    def blocked(self) -> JobQuerySet:
        """Workflow steps waiting for their dependencies (status ``waiting``)."""
        return self.filter(status=JobStatus.WAITING)

    def running(self) -> JobQuerySet:
        return self.filter(status=JobStatus.EXECUTING)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=sorted(TERMINAL_STATUSES))

    def rerunnable(self) -> JobQuerySet:
        return self.filter(status__in=sorted(RERUNNABLE))

    def cancellable(self) -> JobQuerySet:
        return self.filter(status__in=sorted(CANCELLABLE))

    def updatable(self) -> JobQuerySet:
        return self.filter(status__in=sorted(UPDATABLE))


class JobRecord(models.Model):
    id = models.BigAutoField(primary_key=True)
    executor = models.CharField(_("executor"), max_length=255)
    status = models.CharField(
        _("status"), max_length=16, choices=JobStatus.choices, default=JobStatus.SCHEDULED
    )
    data = models.JSONField(_("data"), null=True, blank=True, encoder=CanonicalJSONEncoder)
    metadata = models.JSONField(_("metadata"), null=True, blank=True, encoder=CanonicalJSONEncoder)
    attempt = models.IntegerField(_("attempt"), default=0)
    max_attempts = models.IntegerField(_("max attempts"), default=5)
    priority = models.IntegerField(_("priority"), default=0)
    tags = TagsField(_("tags"), default=list, blank=True)
    # NULL (not "") means "no key": the partial index skips those rows.
    unique_key = models.CharField(  # noqa: DJ001
        _("uniqueness key hash"), max_length=64, null=True, blank=True
    )
    inserted_at = models.DateTimeField(_("inserted at"), default=timezone.now)
    scheduled_at = models.DateTimeField(_("scheduled at"), default=timezone.now)
    attempted_at = models.DateTimeField(_("attempted at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    discarded_at = models.DateTimeField(_("discarded at"), null=True, blank=True)
    claimed_by = models.CharField(  # noqa: DJ001 - NULL: never claimed
        _("claimed by worker"), max_length=255, null=True, blank=True
    )
    cancel_requested_at = models.DateTimeField(_("cancel requested at"), null=True, blank=True)
    #: Why cancellation of the running attempt was requested; recorded with its error.
    # db_default too: the fast raw INSERT and COPY paths leave the column out.
    cancel_reason = models.TextField(_("cancel reason"), blank=True, default="", db_default="")
    # What a completed job returned (JSON), e.g. a django.tasks task's return value.
    result = models.JSONField(_("result"), null=True, blank=True)
    # The last progress its attempt reported (``Job.report_progress``), kept when it ends.
    progress = models.FloatField(_("progress"), null=True, blank=True)
    progress_note = models.TextField(_("progress note"), blank=True, default="", db_default="")
    progress_at = models.DateTimeField(_("progress reported at"), null=True, blank=True)
    # Workflow steps (``django_rexecutor.workflows``); NULL for every other job. The fast raw
    # INSERT and COPY paths of plain jobs leave these columns out (hence db_default).
    workflow_id = models.CharField(  # noqa: DJ001 - NULL: not a workflow step
        _("workflow"), max_length=36, null=True, blank=True
    )
    step = models.CharField(  # noqa: DJ001
        _("workflow step"), max_length=255, null=True, blank=True
    )
    run_if = models.CharField(  # noqa: DJ001
        _("runs if dependencies"), max_length=16, null=True, blank=True
    )
    #: How many of a waiting step's dependencies have not reached a final status yet.
    pending = models.IntegerField(_("unfinished dependencies"), default=0, db_default=0)
    #: The job's flow-control partition (``limits.partition_key``), "" without ``partition_by``;
    #: db_default for the raw insert paths of other versions.
    partition_key = models.CharField(
        _("partition"), max_length=64, blank=True, default="", db_default=""
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        db_table = "rexecutor_job"
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        permissions = [
            ("rerun_job", _("Can rerun jobs")),
            ("cancel_job", _("Can cancel jobs")),
        ]
        indexes = [
            # Serves the claim: WHERE status IN (ready) AND executor = ? ORDER BY priority,
            # scheduled_at, id. Partial, so finished jobs never bloat it.
            models.Index(
                fields=["executor", "priority", "scheduled_at", "id"],
                condition=Q(status__in=sorted(READY_STATUSES)),
                name="rexecutor_job_ready_idx",
            ),
            # Rescue and cancel polling look up running jobs by worker.
            models.Index(
                fields=["claimed_by"],
                condition=Q(status=JobStatus.EXECUTING),
                name="rexecutor_job_running_idx",
            ),
            # Admin filters (newest first) and per-executor dashboards.
            models.Index(fields=["status", "-id"], name="rexecutor_job_status_idx"),
            models.Index(fields=["executor", "status"], name="rexecutor_job_exec_status_idx"),
            # Completions per minute (dashboard) and age-based pruning of complete jobs.
            models.Index(
                fields=["completed_at"],
                condition=Q(status=JobStatus.COMPLETE),
                name="rexecutor_job_completed_idx",
            ),
            models.Index(
                fields=["unique_key"],
                condition=Q(unique_key__isnull=False),
                name="rexecutor_job_unique_key_idx",
            ),
            # A workflow's steps (workflow page, cancel, pruning whole workflows).
            models.Index(fields=["workflow_id"], name="rexecutor_job_workflow_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(attempt__gte=0), name="rexecutor_job_attempt_gte_0"),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="rexecutor_job_max_attempts_gte_1"
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=0), name="rexecutor_job_priority_gte_0"
            ),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="rexecutor_notify_insert",
                level=pgtrigger.Statement,
                when=pgtrigger.After,
                operation=pgtrigger.Insert,
                referencing=pgtrigger.Referencing(new="new_rows"),
                func=_NOTIFY_READY + "RETURN NULL;",
            ),
            pgtrigger.Trigger(
                name="rexecutor_notify_update",
                level=pgtrigger.Statement,
                when=pgtrigger.After,
                operation=pgtrigger.Update,
                referencing=pgtrigger.Referencing(new="new_rows"),
                func=_NOTIFY_READY + _NOTIFY_CANCEL + "RETURN NULL;",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.executor} #{self.pk}"

    @property
    def finished_at(self):  # type: ignore[no-untyped-def]
        """The first set of ``transitions.FINISHED_AT_FIELDS``, as ``Job.finished_at``."""
        return next(
            (at for at in (getattr(self, f) for f in FINISHED_AT_FIELDS) if at is not None),
            None,
        )


class JobDependencyRecord(models.Model):
    """An edge of a workflow: ``job`` waits for ``depends_on``. Plain ids rather than foreign
    keys, so the pruner's one-statement deletes need no cascade; the edges of a workflow go
    with its jobs."""

    id = models.BigAutoField(primary_key=True)
    job_id = models.BigIntegerField(_("job"))
    depends_on_id = models.BigIntegerField(_("depends on job"))

    class Meta:
        db_table = "rexecutor_job_dependency"
        verbose_name = _("job dependency")
        verbose_name_plural = _("job dependencies")
        constraints = [
            models.UniqueConstraint(
                fields=["job_id", "depends_on_id"], name="rexecutor_dependency_unique"
            )
        ]
        indexes = [
            # The release after a job finishes looks up its dependents.
            models.Index(fields=["depends_on_id"], name="rexecutor_dependency_on_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} after {self.depends_on_id}"


class JobErrorRecord(models.Model):
    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(
        JobRecord, on_delete=models.CASCADE, related_name="error_records", verbose_name=_("job")
    )
    attempt = models.IntegerField(_("attempt"))
    error_type = models.CharField(_("error type"), max_length=ERROR_TYPE_MAX_LENGTH)
    message = models.TextField(_("message"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        db_table = "rexecutor_job_error"
        verbose_name = _("job error")
        verbose_name_plural = _("job errors")
        ordering = ["recorded_at", "id"]
        indexes = [models.Index(fields=["-recorded_at"], name="rexecutor_error_recent_idx")]

    def __str__(self) -> str:
        return f"{self.error_type} (attempt {self.attempt})"


class WorkerRecord(models.Model):
    """A worker process and its last heartbeat; stale rows mark dead workers."""

    worker_id = models.CharField(_("worker"), max_length=255, primary_key=True)
    hostname = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.IntegerField(_("pid"), default=0)
    executors = models.JSONField(_("executors"), default=list)
    concurrency = models.IntegerField(_("concurrency"), default=0)
    running = models.JSONField(_("running jobs"), default=list)
    #: Jobs claimed ahead of free slots and not started when last written: if the worker dies,
    #: rescue gives them back with their attempt unused (``Backend.record_claimed_ahead``).
    ahead = models.JSONField(_("jobs claimed ahead"), default=list)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now)

    class Meta:
        db_table = "rexecutor_worker"
        verbose_name = _("worker")
        verbose_name_plural = _("workers")

    def __str__(self) -> str:
        return self.worker_id


class CronTickRecord(models.Model):
    """One row per (cron entry, tick): the unique constraint makes every tick produce exactly
    one job however many schedulers race for it."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(_("cron entry"), max_length=255)
    tick_at = models.DateTimeField(_("tick"))
    job_id = models.BigIntegerField(_("job"), null=True, blank=True)
    inserted_at = models.DateTimeField(_("inserted at"), default=timezone.now)

    class Meta:
        db_table = "rexecutor_cron_tick"
        verbose_name = _("cron tick")
        verbose_name_plural = _("cron ticks")
        constraints = [
            models.UniqueConstraint(fields=["name", "tick_at"], name="rexecutor_cron_tick_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.tick_at:%Y-%m-%d %H:%M:%S}"


class UniquenessLockRecord(models.Model):
    """The rows unique enqueues meet at on PostgreSQL: each upserts the row of its rule's slot
    (``UniquenessCriteria.lock_slot``) before looking for a duplicate. The row lock serialises
    enqueues that could conflict; and a transaction whose snapshot predates a concurrent
    enqueue's commit (``REPEATABLE READ``, ``SERIALIZABLE``), whose duplicate check therefore
    cannot see that job, fails on the upsert with a serialization error instead of inserting
    a duplicate. A fixed number of slots keeps the table small however many keys are used."""

    slot = models.IntegerField(_("slot"), primary_key=True)
    version = models.BigIntegerField(_("version"), default=0)

    class Meta:
        db_table = "rexecutor_uniqueness_lock"
        verbose_name = _("uniqueness lock")
        verbose_name_plural = _("uniqueness locks")

    def __str__(self) -> str:
        return f"slot {self.slot}"


class PausedExecutorRecord(models.Model):
    """An executor paused cluster-wide: no claim takes its jobs while its row exists."""

    executor = models.CharField(_("executor"), max_length=255, primary_key=True)
    paused_at = models.DateTimeField(_("paused at"), default=timezone.now)

    class Meta:
        db_table = "rexecutor_paused_executor"
        verbose_name = _("paused executor")
        verbose_name_plural = _("paused executors")
        permissions = [("pause_executor", _("Can pause and resume executors"))]

    def __str__(self) -> str:
        return self.executor


class ExecutorLimitRecord(models.Model):
    """The row claims of one limited executor lock (``SELECT … FOR UPDATE``) before they count
    its running jobs and recent starts: they take its jobs one claim at a time, so the
    counts they read stay true until they commit. Created on the first claim."""

    executor = models.CharField(_("executor"), max_length=255, primary_key=True)

    class Meta:
        db_table = "rexecutor_executor_limit"
        verbose_name = _("executor limit")
        verbose_name_plural = _("executor limits")

    def __str__(self) -> str:
        return self.executor


class JobStartRecord(models.Model):
    """One start of a rate-limited executor's job, at its ``attempted_at``: what the rate limit
    counts. Rows older than the executor's period are deleted by its next claim."""

    id = models.BigAutoField(primary_key=True)
    executor = models.CharField(_("executor"), max_length=255)
    partition_key = models.CharField(_("partition"), max_length=64, blank=True, default="")
    started_at = models.DateTimeField(_("started at"))

    class Meta:
        db_table = "rexecutor_job_start"
        verbose_name = _("job start")
        verbose_name_plural = _("job starts")
        indexes = [
            models.Index(
                fields=["executor", "partition_key", "started_at"],
                name="rexecutor_job_start_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.executor} @ {self.started_at}"
