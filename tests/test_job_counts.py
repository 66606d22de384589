"""``Backend.job_counts`` on a big table: the queue exact, finished jobs estimated from a
sample where the database can (PostgreSQL), exact elsewhere."""

from __future__ import annotations

import pytest
from django.db import connection

from demo.jobs import RecordEffect
from django_rexecutor import DjangoBackend
from django_rexecutor.backends.django import observing
from django_rexecutor.backends.values import Claim


@pytest.mark.django_db
def test_a_big_table_counts_the_queue_exactly_and_estimates_finished_jobs(monkeypatch) -> None:
    backend = DjangoBackend()
    for n in range(30):
        RecordEffect.enqueue({"n": n})
    for job in backend.claim_jobs("w", {RecordEffect.name: 10}, 10):
        assert backend.mark_job_complete(job.id, claim=Claim.of(job))
    monkeypatch.setattr(observing, "ESTIMATE_THRESHOLD", 1)  # "big" from one row on
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE rexecutor_job")
    counts = backend.job_counts()
    assert counts.counts[(RecordEffect.name, "scheduled")] == 20  # always exact
    if connection.vendor == "postgresql":
        assert counts.estimated == observing.FINISHED
        # The whole (tiny) table is sampled, so the estimate is the truth here.
        assert counts.counts[(RecordEffect.name, "complete")] == 10
    else:
        assert not counts.estimated
        assert counts.counts[(RecordEffect.name, "complete")] == 10
