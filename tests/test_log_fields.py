"""Every worker log line carries its fields in ``extra=`` (``rexecutor_job_id``,
``rexecutor_executor``, ``rexecutor_attempt``, ``rexecutor_outcome``, ``rexecutor_duration``,
``rexecutor_worker``), and a line that is not about a job still has every attribute."""

from __future__ import annotations

import json
import logging

import pytest

from demo.jobs import Outcomes, RecordEffect
from django_rexecutor.logfields import ATTRIBUTES
from tests.worker_support import run_burst_in_process


@pytest.mark.django_db(transaction=True)
def test_outcome_lines_carry_the_job_fields(caplog) -> None:
    caplog.set_level(logging.INFO, logger="django_rexecutor")
    done = RecordEffect.enqueue({"label": "x"})
    failed = Outcomes.enqueue({"outcome": "panic"})
    worker = run_burst_in_process(RecordEffect.name, Outcomes.name)
    records = [r for r in caplog.records if r.name == "django_rexecutor.worker"]
    by_job = {getattr(r, "rexecutor_job_id", None): r for r in records}
    ok, bad = by_job[done], by_job[failed]
    assert (ok.rexecutor_executor, ok.rexecutor_attempt, ok.rexecutor_outcome) == (
        RecordEffect.name,
        1,
        "complete",
    )
    assert ok.rexecutor_worker == worker.worker.worker_id
    assert isinstance(ok.rexecutor_duration, float) and ok.rexecutor_duration >= 0
    assert (bad.rexecutor_outcome, bad.levelname) == ("retryable", "WARNING")
    # Lines about the worker itself have every attribute, the worker's id included.
    started = next(r for r in records if "started" in r.getMessage())
    assert all(hasattr(started, name) for name in ATTRIBUTES)
    assert started.rexecutor_job_id is None
    assert started.rexecutor_worker == worker.worker.worker_id
    # Every field is JSON-serialisable as it is (what a JSON formatter writes).
    json.dumps({name: getattr(ok, name) for name in ATTRIBUTES})
