"""The values the backend contract passes around: a job to insert, a claim (the fence of a
result write), prune rules, a live worker, the outcome of a bulk operation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..job import Job
from ..status import TERMINAL_STATUSES, JobStatus
from ..uniqueness import UniquenessCriteria


@dataclass(frozen=True)
class EnqueuableJob:
    """Everything needed to insert a job; built and validated by ``JobBuilder``."""

    executor: str
    data: Any
    metadata: Any
    max_attempts: int
    scheduled_at: datetime
    tags: tuple[str, ...] = ()
    priority: int = 0
    uniqueness: UniquenessCriteria | None = None
    #: The job's partition (``limits.partition_key``) when its executor has ``partition_by``.
    partition_key: str = ""

    @property
    def unique_key(self) -> str | None:
        """The stable hash stored with the job when its uniqueness rule has a key."""
        rule = self.uniqueness
        return rule.key_hash if rule is not None and not rule.disabled else None


@dataclass(frozen=True)
class Claim:
    """Proof that a worker owns one attempt of a job: the fence for its result writes."""

    job_id: int
    attempt: int
    worker_id: str

    @classmethod
    def of(cls, job: Job) -> Claim:
        if job.claimed_by is None:
            raise ValueError(f"Job {job.id} is not claimed by a worker.")
        return cls(job.id, job.attempt, job.claimed_by)


#: The statuses a prune rule may name: never ``executing``, whose job a worker is running.
PRUNABLE_STATUSES: frozenset[JobStatus] = frozenset(
    {*TERMINAL_STATUSES, JobStatus.SCHEDULED, JobStatus.RETRYABLE}
)


@dataclass(frozen=True)
class PruneRule:
    """Delete jobs in ``status``: older than ``max_age`` (terminal jobs by the time they
    finished, others by ``scheduled_at``), or all but the newest ``max_length``; for every
    executor, ``only`` some, or all ``except_`` some. Never running jobs."""

    status: JobStatus
    max_age: timedelta | None = None
    max_length: int | None = None
    only: frozenset[str] | None = None
    except_: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.status not in PRUNABLE_STATUSES:
            raise ValueError(
                f"Running jobs are never pruned; got a rule for {self.status.value!r}."
            )
        if (self.max_age is None) == (self.max_length is None):
            raise ValueError("A prune rule needs exactly one of max_age and max_length.")
        if self.max_length is not None and self.max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {self.max_length}.")
        if self.only is not None and self.except_ is not None:
            raise ValueError("A prune rule takes `only` or `except`, not both.")

    def covers_executor(self, executor: str) -> bool:
        if self.only is not None:
            return executor in self.only
        if self.except_ is not None:
            return executor not in self.except_
        return True


@dataclass(frozen=True)
class PruneSpec:
    rules: tuple[PruneRule, ...]
    batch_size: int = 10_000


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker as recorded by its heartbeats."""

    worker_id: str
    hostname: str
    pid: int
    executors: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BulkResult:
    """What a bulk rerun or cancel did. ``done`` holds the ids changed, in request order;
    ``requested`` the ids among them that were running, so they only got a cancel request and
    become cancelled when their attempt ends; ``skipped`` maps every other id to a
    ``SkipReason``."""

    done: tuple[int, ...] = ()
    skipped: Mapping[int, str] = field(default_factory=dict)
    requested: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobCounts:
    """Jobs per executor and status (``Backend.job_counts``). ``estimated`` names the
    statuses whose counts are estimates (a big table's finished jobs, counted in a sample);
    the others are exact."""

    counts: Mapping[tuple[str, str], int]
    estimated: frozenset[str] = frozenset()

    def by_executor(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (executor, status), n in sorted(self.counts.items()):
            out.setdefault(executor, {})[status] = n
        return out


#: When a workflow step runs: once every dependency completed (``"succeeded"``), or once
#: every dependency reached a final status, whatever it was (``"finished"``).
RUN_IF_VALUES: tuple[str, ...] = ("succeeded", "finished")


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a workflow to insert: its job, its unique ``name`` in the workflow, the
    names of the steps it waits for (``after``) and when it runs (``run_if``); built by
    ``django_rexecutor.Workflow``."""

    job: EnqueuableJob
    name: str
    after: tuple[str, ...] = ()
    run_if: str = "succeeded"
