"""A big prune proceeds in bounded batches while a worker process keeps completing jobs."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_rexecutor.backends.base import PruneRule, PruneSpec
from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.models import JobRecord
from django_rexecutor.plugins.pruner import Pruner
from django_rexecutor.plugins.schedule import CronSchedule
from django_rexecutor.status import JobStatus
from tests.cron_testapp import jobs as cron_jobs
from tests.test_pruner import JOB_DELETE

OLD, WORK = cron_jobs.CronOther.name, cron_jobs.CronWork.name
TOTAL_OLD = 100_000
BATCH = 10_000
WORK_JOBS = 400

pytestmark = [pytest.mark.slow, pytest.mark.server_db, pytest.mark.django_db(transaction=True)]


def insert_old_jobs() -> None:
    """One finished job made through the ORM, copied TOTAL_OLD - 1 times by the database
    (an ORM bulk insert of 100,000 rows alone would take most of this test's budget)."""
    finished = timezone.now() - timedelta(days=30)
    template = JobRecord.objects.create(
        executor=OLD,
        status=JobStatus.COMPLETE,
        attempt=1,
        scheduled_at=finished,
        inserted_at=finished,
        attempted_at=finished,
        completed_at=finished,
    )
    columns = ", ".join(
        connection.ops.quote_name(f.column)
        for f in JobRecord._meta.concrete_fields
        if not f.primary_key
    )
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    # MariaDB's sequence tables stand in for PostgreSQL's generate_series.
    series = (
        f"seq_2_to_{TOTAL_OLD}"
        if connection.vendor == "mysql"
        else f"generate_series(2, {TOTAL_OLD})"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}"
            f" CROSS JOIN {series} AS n WHERE id = %s",
            [template.pk],
        )
    assert JobRecord.objects.filter(executor=OLD).count() == TOTAL_OLD


def test_prune_100k_in_batches_while_a_worker_completes_jobs(manage_py, subprocess_env) -> None:
    insert_old_jobs()
    cron_jobs.CronWork.enqueue_many([{"data": {"sleep": 0.03}} for _ in range(WORK_JOBS)])
    env = dict(
        subprocess_env, DJANGO_SETTINGS_MODULE="tests.settings_cron", REXECUTOR_TEST_CRON="0"
    )
    options = ["--executor", WORK, "--no-cron", "--no-pruner", "--concurrency", "4"]
    worker = subprocess.Popen(
        [*manage_py, "rexecutor_worker", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    done = JobRecord.objects.filter(executor=WORK, status=JobStatus.COMPLETE)
    try:
        deadline = time.monotonic() + 60
        while done.count() < 20:
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker completed no jobs"
            time.sleep(0.1)

        rule = PruneRule(JobStatus.COMPLETE, max_age=timedelta(days=1))
        pruner = Pruner(DjangoBackend(), PruneSpec((rule,), BATCH), CronSchedule("* * * * *"))
        deletes: list[float] = []

        def count_deletes(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            result = execute(sql, params, many, context)
            if JOB_DELETE.match(sql):
                deletes.append(time.monotonic())
            return result

        started_at, started = timezone.now(), time.monotonic()
        completed_before = done.count()
        with connection.execute_wrapper(count_deletes):
            result = pruner.run_once()
        finished_at, elapsed = timezone.now(), time.monotonic() - started
        completed_during = done.filter(
            completed_at__gte=started_at, completed_at__lte=finished_at
        ).count()

        deadline = time.monotonic() + 60
        while done.count() < WORK_JOBS:
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker stopped completing jobs"
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]

    assert result == [(rule, TOTAL_OLD)], output
    assert not JobRecord.objects.filter(executor=OLD).exists()
    # Bounded batches: one short transaction per BATCH rows.
    assert len(deletes) == TOTAL_OLD // BATCH
    # The worker kept going while the pruner deleted (and its fresh jobs were not pruned).
    assert completed_before < WORK_JOBS
    assert completed_during > 0, f"no job completed during the {elapsed:.1f}s prune"
    assert done.count() == WORK_JOBS
