"""The result queue: the outcomes of ended attempts, waiting to be written.

Completions go out in one fenced batch (``Backend.complete_jobs``) — from the completion
writer's thread (``worker.completions``) once ``start_writer`` started it, so that they are
written while the main thread claims — every other outcome one by one (``record_result``). A
result leaves the queue only once written, so a database error (``DB_ERRORS``, raised to the
caller) just retries it on the next flush. Each written result is reported once: counted in
``stats``, logged on one line, and sent with ``job_finished`` (from the thread that wrote it)
unless the write found the job no longer ours."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from ..backends.base import Backend, Claim
from ..query import IdIn
from ..status import JobStatus
from .attempts import Attempt, Outcome
from .clock import WorkerClock
from .completions import CompletionWriter
from .connections import DB_ERRORS
from .execution import (
    CANCELLED,
    COMPLETE,
    DONE_RESULT,
    STALE,
    AttemptResult,
    describe_exception,
    log_outcome,
    record_result,
    send_finished,
)
from .metrics import NO_METRICS, WorkerMetrics

logger = logging.getLogger("django_rexecutor.worker")


class ResultQueue:
    """Results to write through ``backend`` (times by ``clock``), counted in ``stats`` (outcome
    → count). Main thread only."""

    def __init__(self, backend: Backend, clock: WorkerClock, stats: Counter[str]) -> None:
        self.backend = backend
        self.clock = clock
        self.stats = stats
        self._to_write: deque[Outcome] = deque()
        #: Completions whose batch the backend refused: written one by one (any thread adds).
        self._one_by_one: deque[Outcome] = deque()
        self._writer: CompletionWriter | None = None
        #: ``stats`` and the reports are updated from the writer's thread too.
        self._reporting = threading.Lock()
        #: Told of every recorded outcome (``worker.metrics``); set by the worker.
        self.metrics: WorkerMetrics = NO_METRICS

    def __len__(self) -> int:
        """Results not written yet, wherever they wait."""
        writing = len(self._writer) if self._writer is not None else 0
        return len(self._to_write) + len(self._one_by_one) + writing

    def start_writer(self) -> None:
        """Write completions from a thread of their own from now on."""
        if self._writer is None:
            self._writer = CompletionWriter(self.backend, self._write_completions)
            self._writer.start()

    def stop_writer(self, timeout: float = 10.0) -> None:
        """Stop the writer's thread; what it could not write comes back to this queue."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._to_write.extend(writer.stop(timeout))

    def writing_behind(self, limit: int) -> bool:
        """Whether more than ``limit`` completions wait for the writer (claim no more)."""
        return self._writer is not None and len(self._writer) > limit

    def add(self, attempt: Attempt, result: AttemptResult) -> None:
        self._to_write.append((attempt, result))

    def extend(self, outcomes: Iterable[Outcome]) -> None:
        self._to_write.extend(outcomes)

    def job_ids(self) -> set[int]:
        """The jobs whose result is still to be written (they are still ours)."""
        ids = {a.job.id for a, _ in (*self._to_write, *self._one_by_one)}
        if self._writer is not None:
            ids |= self._writer.job_ids()
        return ids

    def flush(self) -> None:
        """Write queued results: completions in one batch (handed to the writer's thread if
        it runs), the rest one by one. A result leaves the queue only once written (or
        handed over), so a database error just retries it later."""
        while self._one_by_one:
            self._to_write.append(self._one_by_one.popleft())
        if not self._to_write:
            return
        refused = {id(a) for a, _ in self._to_write if a.batch_refused}
        done = [
            (a, r)
            for a, r in self._to_write
            if r is DONE_RESULT and not a.job.cancel_requested and id(a) not in refused
        ]
        if done:
            if self._writer is not None:
                self._writer.submit(done)
                handed = True
            else:
                handed = self._complete(done)
            if handed:
                finished = {id(a) for a, _ in done}
                self._to_write = deque((a, r) for a, r in self._to_write if id(a) not in finished)
        while self._to_write:
            attempt, result = self._to_write[0]
            outcome, recorded = record_result(
                self.backend, attempt.instance, attempt.job, result, now=self.clock.now()
            )
            self._to_write.popleft()
            self._report(attempt, outcome, recorded)

    def _write_completions(self, done: list[Outcome]) -> None:
        """The writer thread's write: one batch; a batch the backend refused for good comes
        back to be written one by one by the main thread."""
        if not self._complete(done):
            for attempt, _ in done:
                attempt.batch_refused = True
            self._one_by_one.extend(done)

    def _complete(self, done: list[Outcome]) -> bool:
        """Acknowledge completions in one batch and report them; ``False`` if the backend
        refused the batch for good, leaving them to be written (and reported) one by one."""
        try:
            written = self.backend.complete_jobs([Claim.of(a.job) for a, _ in done])
        except DB_ERRORS:
            raise
        except Exception as exc:  # one bad row must not block the others
            logger.error(
                "Acknowledging %d completed job(s) at once failed (%s); writing them one by one",
                len(done), describe_exception(exc), exc_info=exc,
            )  # fmt: skip
            return False
        outcomes = [COMPLETE] * len(done)
        if written != len(done):
            outcomes = self._settled_outcomes([a for a, _ in done])
        for (attempt, result), outcome in zip(done, outcomes, strict=True):
            self._report(attempt, outcome, result)
        return True

    def _settled_outcomes(self, attempts: list[Attempt]) -> list[str]:
        """After a partly refused batch of completions, find out what each job became: complete
        (by us), cancelled (a cancel request won) or stale (no longer ours)."""
        try:
            found = self.backend.query(IdIn(tuple(a.job.id for a in attempts)))
        except DB_ERRORS:
            raise
        except Exception as exc:  # the writes are done; only the report is unsure
            logger.error(
                "Reading back %d acknowledged job(s) failed (%s); reporting them as stale",
                len(attempts), describe_exception(exc), exc_info=exc,
            )  # fmt: skip
            found = []
        jobs = {j.id: j for j in found}
        outcomes = []
        for attempt in attempts:
            job = jobs.get(attempt.job.id)
            ours = job is not None and job.attempt == attempt.job.attempt
            if ours and job is not None and job.status == JobStatus.COMPLETE:
                outcomes.append(COMPLETE)
            elif ours and job is not None and job.status == JobStatus.CANCELLED:
                outcomes.append(CANCELLED)
            else:
                outcomes.append(STALE)
        return outcomes

    def _report(self, attempt: Attempt, outcome: str, result: AttemptResult) -> None:
        duration = time.monotonic() - attempt.started
        with self._reporting:
            self.stats[outcome] += 1
        log_outcome(attempt.job, outcome, duration, result)
        self.metrics.attempt_finished(attempt.job, outcome, duration)
        if outcome != STALE:
            send_finished(attempt.executor_cls, attempt.job, outcome, duration)
