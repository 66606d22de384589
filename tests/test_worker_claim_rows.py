"""The worker (in the test process, on the database backend): claim order across executors, and
unreadable rows among good jobs."""

from __future__ import annotations

import pytest
from django.db import connection

from demo.jobs import Limited, Outcomes, RecordEffect
from django_rexecutor import JobStatus
from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import ErrorType
from tests.bad_rows import BAD_VALUES, POSTGRES_BAD_VALUES, corrupt
from tests.worker_support import run_burst_in_process

# The worker's threads have their own connections: they need committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def test_priority_holds_across_executors_beside_a_capped_one() -> None:
    # test.limited (max_concurrency 2) makes the worker claim per executor; test.record comes
    # first in its list, yet its priority-9 jobs must wait for test.outcomes' priority-0 ones.
    routine = RecordEffect.enqueue_many([{"data": {}, "priority": 9} for _ in range(10)])
    urgent = Outcomes.enqueue_many([{"data": {"outcome": "done"}, "priority": 0} for _ in range(4)])
    executors = [RecordEffect.name, Outcomes.name, Limited.name]
    run_burst_in_process(*executors, concurrency=4)
    attempted = dict(JobRecord.objects.values_list("id", "attempted_at"))
    assert max(attempted[i] for i in urgent) <= min(attempted[i] for i in routine)
    assert JobRecord.objects.filter(status=JobStatus.COMPLETE).count() == 14


def test_unreadable_rows_fail_alone_and_good_jobs_run_on_attempt_one() -> None:
    cases = dict(BAD_VALUES)
    if connection.vendor == "postgresql":
        cases |= POSTGRES_BAD_VALUES
    good: list[int] = []
    bad: dict[int, tuple[str, str]] = {}
    for column, value, field, words in cases.values():
        good += RecordEffect.enqueue_many([{"data": {}, "max_attempts": 1} for _ in range(3)])
        job_id = RecordEffect.enqueue({}, max_attempts=1)
        corrupt(job_id, column, value)
        bad[job_id] = (field, words)
        good.append(RecordEffect.enqueue({}, max_attempts=1))
    output = run_burst_in_process(concurrency=8).output
    # (values_list: the bad rows are exactly what model instances cannot load)
    states = {pk: (s, a) for pk, s, a in JobRecord.objects.values_list("pk", "status", "attempt")}
    assert {states[i] for i in good} == {(JobStatus.COMPLETE, 1)}
    for job_id, (field, words) in bad.items():
        assert states[job_id] == (JobStatus.DISCARDED, 1)
        [error] = JobErrorRecord.objects.filter(job_id=job_id)
        assert error.error_type == ErrorType.UNREADABLE
        assert field in error.message and words in error.message, error.message
        assert f"Job {job_id} " in output
    # The worker never had to give up an identity for a failed claim.
    assert "Claiming jobs failed" not in output
