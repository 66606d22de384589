"""The pruner: rules delete exactly the jobs they describe (on both databases), in batches,
one worker at a time; its settings are checked; ``rexecutor_prune`` runs it by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_rexecutor.backends.base import Claim, PruneRule
from django_rexecutor.backends.django.engines.postgresql import advisory_lock_key
from django_rexecutor.backends.memory import InMemoryBackend
from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.exceptions import ConfigurationError
from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.plugins.pruner import LOCK_NAME, Pruner, check_pruner
from django_rexecutor.query import Where
from django_rexecutor.status import JobStatus
from tests.cron_testapp import jobs as cron_jobs

A, B, C = cron_jobs.CronTick.name, cron_jobs.CronWork.name, cron_jobs.CronOther.name
DAY = timedelta(days=1)
#: A DELETE from the jobs table (not from the errors table), quoted or not, on its own or as
#: the first part of a statement that deletes the errors too.
JOB_DELETE = re.compile(r'\s*(WITH \w+ AS \()?DELETE FROM "?rexecutor_job"?\s', re.IGNORECASE)
_FINISHED_FIELD = {
    JobStatus.COMPLETE: "completed_at",
    JobStatus.CANCELLED: "cancelled_at",
    JobStatus.DISCARDED: "discarded_at",
}


def make_job(
    executor: str = A,
    status: JobStatus = JobStatus.COMPLETE,
    *,
    finished_ago: timedelta | None = None,
    scheduled_ago: timedelta = timedelta(0),
    errors: int = 0,
) -> int:
    now = timezone.now()
    fields: dict[str, Any] = {
        "executor": executor,
        "status": status,
        "scheduled_at": now - scheduled_ago,
        "attempt": 1 if status != JobStatus.SCHEDULED else 0,
    }
    if status in _FINISHED_FIELD:
        fields[_FINISHED_FIELD[status]] = now - (finished_ago or timedelta(0))
    job = JobRecord.objects.create(**fields)
    for attempt in range(errors):
        JobErrorRecord.objects.create(job=job, attempt=attempt + 1, error_type="error")
    return job.pk


def pruner(*rules: dict[str, Any], batch_size: int = 10_000) -> Pruner:
    config = {"rules": list(rules), "batch_size": batch_size}
    with override_settings(REXECUTOR={"PRUNER": config}):
        plugin = Pruner.from_settings(DjangoBackend())
    assert plugin is not None
    return plugin


def remaining() -> set[int]:
    return set(JobRecord.objects.values_list("pk", flat=True))


# -- rules -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_max_age_counts_from_when_a_job_finished() -> None:
    old = make_job(finished_ago=10 * DAY)
    recent = make_job(finished_ago=DAY)
    # Scheduled long ago but finished recently: kept (rexecutor aged jobs by scheduled_at).
    long_running = make_job(scheduled_ago=30 * DAY, finished_ago=DAY)
    old_discarded = make_job(status=JobStatus.DISCARDED, finished_ago=10 * DAY)
    result = pruner({"status": "complete", "max_age": timedelta(days=7)}).run_once()
    assert result is not None and [count for _, count in result] == [1]
    assert remaining() == {recent, long_running, old_discarded}
    assert old not in remaining()


@pytest.mark.django_db
def test_max_age_in_seconds_for_each_terminal_status() -> None:
    old = {s: make_job(status=s, finished_ago=2 * DAY) for s in _FINISHED_FIELD}
    new = {s: make_job(status=s, finished_ago=timedelta(minutes=1)) for s in _FINISHED_FIELD}
    rules = [{"status": s.value, "max_age": DAY.total_seconds()} for s in _FINISHED_FIELD]
    pruner(*rules).run_once()
    assert remaining() == set(new.values())
    assert not remaining() & set(old.values())


@pytest.mark.django_db
def test_max_length_keeps_the_most_recently_finished() -> None:
    # Ids and finish order disagree: the newest *finished* jobs are kept, not the newest ids.
    ages = [5, 1, 4, 2, 3]
    ids = [make_job(finished_ago=timedelta(hours=h)) for h in ages]
    keep = {ids[1], ids[3]}  # finished 1 h and 2 h ago
    pruner({"status": "complete", "max_length": 2}).run_once()
    assert remaining() == keep


@pytest.mark.django_db
def test_max_length_counts_every_job_the_rule_covers() -> None:
    a = [make_job(A, finished_ago=timedelta(hours=h)) for h in (1, 3, 5)]
    b = [make_job(B, finished_ago=timedelta(hours=h)) for h in (2, 4, 6)]
    c = make_job(C, finished_ago=timedelta(hours=10))
    pruner({"status": "complete", "max_length": 3, "only": [A, B]}).run_once()
    # The newest three across A and B together (not three per executor); C is not covered.
    assert remaining() == {a[0], b[0], a[1], c}


@pytest.mark.django_db
def test_only_and_except_filters() -> None:
    old_a, old_b, old_c = (make_job(e, finished_ago=10 * DAY) for e in (A, B, C))
    pruner({"status": "complete", "max_age": DAY, "only": [A]}).run_once()
    assert remaining() == {old_b, old_c}
    pruner({"status": "complete", "max_age": DAY, "except": [B]}).run_once()
    assert remaining() == {old_b}
    assert old_a not in remaining()


@pytest.mark.django_db
def test_waiting_and_running_jobs_are_pruned_only_by_a_rule_naming_their_status() -> None:
    ancient = 365 * DAY
    waiting = {
        status: make_job(status=status, scheduled_ago=ancient)
        for status in (JobStatus.SCHEDULED, JobStatus.RETRYABLE, JobStatus.EXECUTING)
    }
    terminal_rules = [
        {"status": s.value, "max_age": timedelta(seconds=1)} for s in _FINISHED_FIELD
    ] + [{"status": s.value, "max_length": 0} for s in _FINISHED_FIELD]
    pruner(*terminal_rules).run_once()
    assert remaining() == set(waiting.values())
    # Naming a waiting status prunes it (by scheduled_at), and only it.
    pruner({"status": "retryable", "max_age": 30 * DAY}).run_once()
    assert remaining() == {waiting[JobStatus.SCHEDULED], waiting[JobStatus.EXECUTING]}


@pytest.mark.django_db
def test_errors_of_pruned_jobs_go_with_them() -> None:
    pruned = make_job(status=JobStatus.DISCARDED, finished_ago=10 * DAY, errors=3)
    kept = make_job(status=JobStatus.DISCARDED, finished_ago=timedelta(hours=1), errors=2)
    pruner({"status": "discarded", "max_age": DAY}).run_once()
    assert remaining() == {kept}
    assert list(JobErrorRecord.objects.values_list("job_id", flat=True)) == [kept, kept]
    assert not JobErrorRecord.objects.filter(job_id=pruned).exists()


@pytest.mark.django_db
def test_deletes_in_batches_of_batch_size() -> None:
    for _ in range(10):
        make_job(finished_ago=10 * DAY)
    keep = make_job(finished_ago=timedelta(hours=1))
    deletes: list[str] = []

    def count_deletes(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if JOB_DELETE.match(sql):
            deletes.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_deletes):
        result = pruner({"status": "complete", "max_age": DAY}, batch_size=3).run_once()
    assert result is not None and result[0][1] == 10
    assert len(deletes) == 4  # 3 + 3 + 3 + 1
    assert remaining() == {keep}


def test_in_memory_backend() -> None:
    backend = InMemoryBackend()
    with override_settings(
        REXECUTOR={"PRUNER": {"rules": [{"status": "complete", "max_length": 1}]}}
    ):
        plugin = Pruner.from_settings(backend)
    assert plugin is not None
    for _ in range(3):
        cron_jobs.CronTick.enqueue(backend=backend)
    for job in backend.claim_jobs("w", {A: 3}, 3):
        backend.mark_job_complete(job.id, claim=Claim.of(job))
    assert [count for _, count in plugin.dry_run()] == [2]
    assert plugin.run_once() == [(PruneRule(JobStatus.COMPLETE, max_length=1), 2)]
    assert len(backend.query(Where.all())) == 1


# -- jobs that change while a batch is deleted -----------------------------------------------


def change_before_the_delete(change: Any) -> Any:
    """An execute wrapper that calls ``change()`` (on the same connection, so inside the
    pruner's transaction) just before the pruner's first DELETE: the job changes after the
    batch was selected and before it is deleted, as a worker's claim could."""
    state = {"done": False}

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if not state["done"] and "DELETE" in sql.upper():
            state["done"] = True
            change()
        return execute(sql, params, many, context)

    return wrapper


def rerun_and_claim(job_id: int, executor: str = A) -> None:
    backend = DjangoBackend()
    backend.rerun_job(job_id)
    [claimed] = backend.claim_jobs("worker-1", {executor: 1}, 1)
    assert claimed.id == job_id


@pytest.mark.django_db
def test_a_job_rerun_and_claimed_after_the_batch_was_selected_is_not_deleted() -> None:
    job_id = make_job(finished_ago=10 * DAY, errors=1)
    other = make_job(finished_ago=10 * DAY)
    with connection.execute_wrapper(change_before_the_delete(lambda: rerun_and_claim(job_id))):
        result = pruner({"status": "complete", "max_age": DAY}).run_once()
    assert result is not None and result[0][1] == 1
    assert remaining() == {job_id}
    job = JobRecord.objects.get(pk=job_id)
    assert (job.status, job.claimed_by) == (JobStatus.EXECUTING, "worker-1")
    assert JobErrorRecord.objects.filter(job_id=job_id).count() == 1, "its history is kept"
    assert other not in remaining()


@pytest.mark.django_db
def test_max_length_keeps_a_job_that_finished_again_after_the_batch_was_selected() -> None:
    old = make_job(finished_ago=10 * DAY)
    newer = make_job(finished_ago=DAY)

    def finish_again() -> None:
        rerun_and_claim(old)
        job = JobRecord.objects.get(pk=old)
        assert DjangoBackend().mark_job_complete(old, claim=Claim(old, job.attempt, "worker-1"))

    with connection.execute_wrapper(change_before_the_delete(finish_again)):
        pruner({"status": "complete", "max_length": 1}).run_once()
    # "old" is now the most recently finished job: the one to keep. The next run catches up.
    assert remaining() == {old, newer}
    pruner({"status": "complete", "max_length": 1}).run_once()
    assert remaining() == {old}


@pytest.mark.django_db
def test_a_waiting_job_claimed_after_the_batch_was_selected_is_not_deleted() -> None:
    job_id = make_job(status=JobStatus.SCHEDULED, scheduled_ago=10 * DAY)
    claim = lambda: DjangoBackend().claim_jobs("worker-1", {A: 1}, 1)  # noqa: E731
    with connection.execute_wrapper(change_before_the_delete(claim)):
        pruner({"status": "scheduled", "max_age": DAY}).run_once()
    assert JobRecord.objects.get(pk=job_id).status == JobStatus.EXECUTING


# -- schedule and locking --------------------------------------------------------------------


@pytest.mark.django_db
def test_runs_at_the_ticks_of_its_schedule() -> None:
    old = make_job(finished_ago=10 * DAY)
    config = {"schedule": "0 3 * * *", "rules": [{"status": "complete", "max_age": DAY}]}
    with override_settings(REXECUTOR={"PRUNER": config}):
        plugin = Pruner.from_settings(DjangoBackend())
    assert plugin is not None
    noon = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert plugin.run_pending(noon) == datetime(2025, 1, 2, 3, tzinfo=UTC)
    assert old in remaining()  # not at start: at the next tick
    plugin.run_pending(datetime(2025, 1, 2, 3, 0, 1, tzinfo=UTC))
    assert old not in remaining()


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_one_worker_at_a_time_prunes() -> None:
    old = make_job(finished_ago=10 * DAY)
    plugin = pruner({"status": "complete", "max_age": DAY})
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        autocommit=True,
    )
    try:
        # Another worker is pruning: this one skips its run.
        other.execute("SELECT pg_advisory_lock(%s)", [advisory_lock_key(LOCK_NAME)])
        assert plugin.run_once() is None
        assert old in remaining()
        other.execute("SELECT pg_advisory_unlock(%s)", [advisory_lock_key(LOCK_NAME)])
        assert plugin.run_once() == [(plugin.spec.rules[0], 1)]
        # The run released the lock, so the other session can take it again.
        row = other.execute(
            "SELECT pg_try_advisory_lock(%s)", [advisory_lock_key(LOCK_NAME)]
        ).fetchone()
        assert row == (True,)
    finally:
        other.close()
    assert old not in remaining()


@pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB/MySQL's named locks")
@pytest.mark.django_db
def test_one_worker_at_a_time_prunes_on_mariadb() -> None:
    import MySQLdb

    from django_rexecutor.backends.django.engines.mysql import lock_name

    old = make_job(finished_ago=10 * DAY)
    plugin = pruner({"status": "complete", "max_age": DAY})
    settings = connection.settings_dict
    key = lock_name(settings["NAME"], LOCK_NAME)
    other = MySQLdb.connect(
        host=settings["HOST"],
        port=int(settings["PORT"] or 3306),
        user=settings["USER"],
        password=settings["PASSWORD"],
    )
    try:
        cursor = other.cursor()
        # Another worker is pruning: this one skips its run.
        cursor.execute("SELECT GET_LOCK(%s, 0)", [key])
        assert cursor.fetchone() == (1,)
        assert plugin.run_once() is None
        assert old in remaining()
        cursor.execute("SELECT RELEASE_LOCK(%s)", [key])
        assert plugin.run_once() == [(plugin.spec.rules[0], 1)]
        # The run released the lock, so the other session can take it again.
        cursor.execute("SELECT GET_LOCK(%s, 0)", [key])
        assert cursor.fetchone() == (1,)
    finally:
        other.close()
    assert old not in remaining()


def test_named_locks_fit_mariadbs_64_characters_and_stay_distinct() -> None:
    from django_rexecutor.backends.django.engines.mysql import lock_name

    short = lock_name("app", "pruner")
    assert short == "django_rexecutor.app.pruner"
    long_names = {lock_name("test_rexecutor_12345", f"{'x' * 80}{i}") for i in range(3)}
    assert len(long_names) == 3
    assert all(len(name) <= 64 for name in long_names)


# -- settings checks -------------------------------------------------------------------------


def check_ids(config: object) -> list[str]:
    with override_settings(REXECUTOR={"PRUNER": config}):
        found = [m.id or "" for m in check_pruner()]
        registered = [m.id or "" for m in checks.run_checks()]
        assert set(found) <= set(registered)
        if any(i.split(".")[-1].startswith("E") for i in found):
            with pytest.raises(ConfigurationError):
                Pruner.from_settings(DjangoBackend())
        return found


@pytest.mark.django_db  # Django 6.1's system checks query every database
def test_valid_pruner_settings_pass() -> None:
    config = {
        "schedule": "*/30 * * * * *",
        "timezone": "Europe/Paris",
        "batch_size": 500,
        "rules": [
            {"status": "complete", "max_age": timedelta(days=7)},
            {"status": JobStatus.DISCARDED, "max_length": 1000, "except": [A]},
            {"status": "CANCELLED", "max_age": 3600, "only": [A, B]},
        ],
    }
    assert check_ids(config) == []


def test_no_pruner_by_default() -> None:
    with override_settings(REXECUTOR={}):
        assert Pruner.from_settings(DjangoBackend()) is None
        assert check_pruner() == []


@pytest.mark.django_db  # Django 6.1's system checks query every database
@pytest.mark.parametrize(
    ("config", "check_id"),
    [
        ([{"status": "complete"}], "E201"),
        ({"rules": []}, "E201"),
        ({"rules": [{"status": "complete", "max_length": 1}], "every": 5}, "E201"),
        ({"schedule": "every day", "rules": [{"status": "complete", "max_length": 1}]}, "E202"),
        ({"rules": [{"status": "done", "max_length": 1}]}, "E203"),
        ({"rules": [{"status": "complete"}]}, "E203"),
        ({"rules": [{"status": "complete", "max_age": 1, "max_length": 1}]}, "E203"),
        ({"rules": [{"status": "complete", "max_age": -5}]}, "E203"),
        ({"rules": [{"status": "complete", "max_length": -1}]}, "E203"),
        ({"rules": [{"status": "complete", "max_length": 1, "only": [A], "except": [B]}]}, "E203"),
        ({"rules": [{"status": "complete", "max_length": 1, "only": A}]}, "E203"),
        ({"rules": ["complete"]}, "E203"),
        ({"rules": [{"status": "complete", "max_length": 1}], "batch_size": 0}, "E204"),
        ({"rules": [{"status": "complete", "max_length": 1}], "batch_size": 10**6}, "E204"),
        (
            {"timezone": "Nowhere/Special", "rules": [{"status": "complete", "max_length": 1}]},
            "E205",
        ),
        ({"schedule": "0 3 30 2 *", "rules": [{"status": "complete", "max_length": 1}]}, "E206"),
        ({"rules": [{"status": "executing", "max_age": 3600}]}, "E207"),
        ({"rules": [{"status": "EXECUTING", "max_length": 0}]}, "E207"),
        ({"rules": [{"status": "complete", "max_length": 1, "only": ["gone.executor"]}]}, "W201"),
    ],
)
def test_invalid_pruner_settings_have_documented_ids(config: object, check_id: str) -> None:
    assert f"django_rexecutor.{check_id}" in check_ids(config)


def test_a_rule_for_running_jobs_is_an_error_that_says_why() -> None:
    with override_settings(
        REXECUTOR={"PRUNER": {"rules": [{"status": "executing", "max_age": 1}]}}
    ):
        [message] = check_pruner()
    assert message.id == "django_rexecutor.E207" and message.level == checks.ERROR
    assert "['status'] = 'executing'" in message.msg and "never pruned" in message.msg
    assert "rescued" in (message.hint or "")


# -- manage.py rexecutor_prune ---------------------------------------------------------------


@pytest.mark.django_db
def test_prune_command_dry_run_prints_and_deletes_nothing() -> None:
    for _ in range(3):
        make_job(A, finished_ago=10 * DAY)
    make_job(B, status=JobStatus.DISCARDED, finished_ago=10 * DAY)
    before = remaining()
    config = {
        "rules": [
            {"status": "complete", "max_age": DAY},
            {"status": "discarded", "max_length": 0, "only": [B]},
        ]
    }
    out = StringIO()
    with override_settings(REXECUTOR={"PRUNER": config}):
        call_command("rexecutor_prune", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "Rule 1: complete older than 1 day (since finished): would delete 3" in text
    assert f"Rule 2: discarded beyond the newest 0, only ['{B}']: would delete 1" in text
    assert "nothing deleted (4 job(s) in all)" in text
    assert remaining() == before
    out = StringIO()
    with override_settings(REXECUTOR={"PRUNER": config}):
        call_command("rexecutor_prune", stdout=out)
    assert "Deleted 4 job(s)." in out.getvalue()
    assert remaining() == set()


def test_prune_command_without_configuration() -> None:
    with override_settings(REXECUTOR={}), pytest.raises(CommandError, match="not configured"):
        call_command("rexecutor_prune")
