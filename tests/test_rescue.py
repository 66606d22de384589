"""Rescue on the Django backend: orphans are rescued in batches, each a short transaction of a
few set-based statements, not one transaction per job (on both databases). The contract
itself is in the conformance suite; a million-job rescue is in ``test_big_table.py``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import JobStatus
from tests.factories import JobRecordFactory


class Statements:
    """Counts the statements a block runs, and the transactions it opens."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        self.sql.append(sql)
        return execute(sql, params, many, context)

    def count(self, *words: str) -> int:
        return sum(all(w in s.upper() for w in words) for s in self.sql)


@pytest.mark.django_db
def test_rescue_runs_a_few_statements_per_batch_not_per_job() -> None:
    JobRecordFactory.create_batch(25, executing=True, claimed_by="dead-1", errors=[])
    JobRecordFactory.create_batch(10, executing=True, claimed_by="dead-2", errors=[], attempt=5)
    backend = DjangoBackend()
    backend.rescue_batch_size = 10
    statements = Statements()
    with connection.execute_wrapper(statements):
        rescued = backend.rescue_orphaned_jobs(timedelta(seconds=30))
    assert len(rescued) == 35 == len(set(rescued))
    # Four batches (10, 10, 10, 5): one bulk insert of errors each, and a bounded number of
    # statements in all (a statement or three per job before).
    assert statements.count("INSERT INTO", "REXECUTOR_JOB_ERROR") == 4
    assert len(statements.sql) <= 4 * 8
    assert JobRecord.objects.filter(status=JobStatus.RETRYABLE).count() == 25
    assert JobRecord.objects.filter(status=JobStatus.DISCARDED).count() == 10
    assert JobErrorRecord.objects.filter(error_type="orphaned").count() == 35


@pytest.mark.django_db
def test_rescue_leaves_a_job_that_a_live_worker_claimed_after_it_was_read() -> None:
    """The write is fenced by (id, attempt, worker): a job claimed again between the batch's
    read and its write (possible without row locks, on SQLite) is not overwritten."""
    [job] = JobRecordFactory.create_batch(1, executing=True, claimed_by="dead-1", errors=[])
    backend = DjangoBackend()
    state = {"done": False}

    def claim_again(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if not state["done"] and sql.lstrip().upper().startswith("UPDATE"):
            state["done"] = True
            # Another worker's attempt 2 now runs the job (and that worker is alive).
            JobRecord.objects.filter(pk=job.pk).update(attempt=2, claimed_by="alive")
            backend.record_heartbeat("alive", executors=["x"], concurrency=1)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(claim_again):
        assert backend.rescue_orphaned_jobs(timedelta(seconds=30)) == []
    record = JobRecord.objects.get(pk=job.pk)
    assert (record.status, record.attempt, record.claimed_by) == ("executing", 2, "alive")
    assert not JobErrorRecord.objects.filter(job_id=job.pk).exists()
