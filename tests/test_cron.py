"""Cron: expressions and time zones, settings checks, and the scheduler run in-process against
the real database (exactly one job per tick, no backfill, the ``rexecutor_cron`` listing)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connections
from django.test import override_settings

from django_rexecutor.backends.base import Claim, EnqueuableJob, PruneRule, PruneSpec
from django_rexecutor.backends.memory import InMemoryBackend
from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.exceptions import ConfigurationError
from django_rexecutor.job import JobId
from django_rexecutor.models import CronTickRecord, JobRecord
from django_rexecutor.plugins.cron import (
    MISFIRE_GRACE,
    RETRY_AFTER_ERROR,
    TICK_RETENTION,
    CronScheduler,
    check_cron,
    parse_entries,
)
from django_rexecutor.plugins.pruner import Pruner
from django_rexecutor.plugins.schedule import CronSchedule, InvalidCronExpression, UnknownTimeZone
from django_rexecutor.query import Where
from django_rexecutor.status import JobStatus
from tests.cron_testapp import jobs as cron_jobs

TICK = cron_jobs.CronTick.name
EVERY_SECOND = {"name": "every-second", "executor": TICK, "schedule": "* * * * * *"}


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id or "" for m in messages]


def cron_settings(*entries: dict[str, object]) -> override_settings:
    return override_settings(REXECUTOR={"CRON": list(entries)})


# -- expressions and time zones --------------------------------------------------------------


def test_six_fields_take_seconds_first() -> None:
    schedule = CronSchedule.parse("*/20 5 * * * *", "UTC")
    # Seconds 0/20/40 of minute 5 of every hour; croniter's own 6-field form would read the
    # same text as "every 20th minute at second 5".
    assert schedule.upcoming(at(2025, 1, 1, 9, 0, 0), 4) == [
        at(2025, 1, 1, 9, 5, 0),
        at(2025, 1, 1, 9, 5, 20),
        at(2025, 1, 1, 9, 5, 40),
        at(2025, 1, 1, 10, 5, 0),
    ]


def test_five_fields_and_aliases() -> None:
    assert CronSchedule.parse("30 2 * * *", "UTC").next_after(at(2025, 1, 1)) == at(
        2025, 1, 1, 2, 30
    )
    assert CronSchedule.parse("@hourly", "UTC").next_after(at(2025, 1, 1, 9, 1)) == at(
        2025, 1, 1, 10
    )


def test_inclusive_next_includes_a_tick_exactly_now() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "UTC")
    assert schedule.next_after(at(2025, 1, 1, 9), inclusive=True) == at(2025, 1, 1, 9)
    assert schedule.next_after(at(2025, 1, 1, 9)) == at(2025, 1, 2, 9)


def test_non_utc_zone_in_winter_and_summer() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Paris")
    assert schedule.next_after(at(2025, 1, 15)) == at(2025, 1, 15, 8)  # CET = UTC+1
    assert schedule.next_after(at(2025, 7, 15)) == at(2025, 7, 15, 7)  # CEST = UTC+2


def test_daylight_saving_transitions_follow_croniter() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Paris")
    # 02:30 does not exist on 30 March 2025: it runs at the first valid time after it.
    assert schedule.next_after(at(2025, 3, 29, 12)) == at(2025, 3, 30, 1)  # 03:00 CEST
    # 02:30 happens twice on 26 October 2025: once per UTC instant.
    assert schedule.upcoming(at(2025, 10, 25, 12), 2) == [
        at(2025, 10, 26, 0, 30),
        at(2025, 10, 26, 1, 30),
    ]


def test_default_time_zone_is_the_projects() -> None:
    with override_settings(TIME_ZONE="America/New_York"):
        schedule = CronSchedule.parse("0 9 * * *")
    assert schedule.zone_name == "America/New_York"
    assert schedule.next_after(at(2025, 1, 15)) == at(2025, 1, 15, 14)


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "* * * * * * *", "61 * * * *", "* * 32 * *", "R * * * *", "H * * * *", 5],
)
def test_invalid_expressions_are_refused(expression: object) -> None:
    with pytest.raises(InvalidCronExpression):
        CronSchedule.parse(expression, "UTC")


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(UnknownTimeZone, match="Mars/Olympus_Mons"):
        CronSchedule.parse("* * * * *", "Mars/Olympus_Mons")


def test_description_is_human_readable() -> None:
    assert CronSchedule.parse("*/5 * * * * *", "UTC").describe() == "Every 5 seconds"
    assert CronSchedule.parse("0 9 * * 1-5", "UTC").describe() == "At 09:00, Monday through Friday"


# -- settings and system checks --------------------------------------------------------------


@pytest.mark.django_db  # Django 6.1's system checks query every database
def test_valid_entries_pass_the_checks() -> None:
    entries = [
        EVERY_SECOND,
        {"executor": TICK, "schedule": "0 9 * * *", "timezone": "Europe/Paris", "data": {"a": 1}},
    ]
    with cron_settings(*entries):
        assert check_cron() == []
        # Registered with Django's check framework too.
        ours = ("django_rexecutor.E1", "django_rexecutor.E2", "django_rexecutor.W2")
        assert not [m for m in checks.run_checks() if (m.id or "").startswith(ours)]


@pytest.mark.django_db  # Django 6.1's system checks query every database
@pytest.mark.parametrize(
    ("entry", "check_id", "text"),
    [
        ({"executor": TICK, "schedule": "61 * * * *"}, "django_rexecutor.E101", "61 * * * *"),
        ({"executor": TICK, "schedule": "* * *"}, "django_rexecutor.E101", "3 field"),
        ({"executor": "no.such.executor", "schedule": "* * * * *"}, "django_rexecutor.E102", ""),
        (
            {"executor": TICK, "schedule": "* * * * *", "timezone": "Europe/Atlantis"},
            "django_rexecutor.E103",
            "Europe/Atlantis",
        ),
        ({"executor": TICK}, "django_rexecutor.E105", "schedule"),
        ({"schedule": "* * * * *"}, "django_rexecutor.E105", "executor"),
        ({"executor": TICK, "schedule": "* * * * *", "cron": 1}, "django_rexecutor.E105", "cron"),
        (
            {"executor": TICK, "schedule": "* * * * *", "data": {"when": datetime.now()}},
            "django_rexecutor.E105",
            "JSON",
        ),
        ({"executor": TICK, "schedule": "* * * * *", "priority": -1}, "django_rexecutor.E105", ""),
        ({"executor": TICK, "schedule": "* * * * *", "tags": "x"}, "django_rexecutor.E105", ""),
        ("not a dict", "django_rexecutor.E105", "dict"),
        ({"executor": TICK, "schedule": "0 0 31 2 *"}, "django_rexecutor.E106", "never fires"),
        ({"executor": TICK, "schedule": "0 0 0 30 2 *"}, "django_rexecutor.E106", "never fires"),
        ({"executor": TICK, "schedule": "0 0 31 4,6 *"}, "django_rexecutor.E106", "'0 0 31 4,6 *'"),
    ],
)
def test_invalid_entries_have_documented_ids(entry: object, check_id: str, text: str) -> None:
    with override_settings(REXECUTOR={"CRON": [entry]}):
        messages = check_cron()
        assert check_id in ids(messages), messages
        assert text in " ".join(m.msg for m in messages)
        # The same problems surface through `manage.py check`'s machinery.
        assert check_id in ids(checks.run_checks())
        # And a worker refuses to start on them.
        with pytest.raises(ConfigurationError, match=check_id.replace(".", r"\.")):
            CronScheduler.from_settings(InMemoryBackend())


def test_duplicate_names_are_an_error() -> None:
    explicit = [
        {"name": "nightly", "executor": TICK, "schedule": "0 1 * * *"},
        {"name": "nightly", "executor": TICK, "schedule": "0 2 * * *"},
    ]
    with cron_settings(*explicit):
        assert ids(check_cron()) == ["django_rexecutor.E104"]
    # Without names, identity is executor + schedule (whitespace does not matter).
    implicit = [
        {"executor": TICK, "schedule": "0 1 * * *", "data": 1},
        {"executor": TICK, "schedule": "0  1 * * *", "data": 2},
    ]
    with cron_settings(*implicit):
        messages = check_cron()
        assert ids(messages) == ["django_rexecutor.E104"]
        assert "cron_test.tick 0 1 * * *" in messages[0].msg
    # The same executor and schedule under distinct names is fine.
    named = [dict(entry, name=f"n{i}") for i, entry in enumerate(implicit)]
    with cron_settings(*named):
        assert check_cron() == []


def test_cron_must_be_a_list() -> None:
    with override_settings(REXECUTOR={"CRON": {"executor": TICK}}):
        assert ids(check_cron()) == ["django_rexecutor.E105"]


def test_no_entries_means_no_scheduler() -> None:
    with override_settings(REXECUTOR={}):
        assert CronScheduler.from_settings(InMemoryBackend()) is None


def test_rare_but_possible_dates_pass_the_checks() -> None:
    # February 29th fires every four years; the last day of February every year.
    with cron_settings(
        {"executor": TICK, "schedule": "0 0 29 2 *"}, {"executor": TICK, "schedule": "0 0 L 2 *"}
    ):
        assert check_cron() == []


# -- the scheduler against the database ------------------------------------------------------


def scheduler(*entries: dict[str, object]) -> CronScheduler:
    found, problems = parse_entries(list(entries))
    assert not problems
    return CronScheduler(DjangoBackend(), found)


def tick_jobs() -> list[JobRecord]:
    return list(JobRecord.objects.filter(executor=TICK).order_by("scheduled_at"))


@pytest.mark.django_db
def test_each_due_tick_enqueues_one_job_with_the_entry_options() -> None:
    entry = dict(EVERY_SECOND, data={"n": 1}, metadata={"m": 2}, tags=["cron"], priority=3)
    cron = scheduler(entry)
    start = at(2025, 1, 1, 9, 0, 0) + timedelta(microseconds=500_000)
    # Nothing is due yet; the scheduler asks to be called at the next tick.
    assert cron.run_pending(start) == at(2025, 1, 1, 9, 0, 1)
    assert tick_jobs() == []
    assert cron.run_pending(at(2025, 1, 1, 9, 0, 3)) == at(2025, 1, 1, 9, 0, 4)
    jobs = tick_jobs()
    assert [j.scheduled_at for j in jobs] == [at(2025, 1, 1, 9, 0, s) for s in (1, 2, 3)]
    job = jobs[0]
    assert (job.status, job.data, job.metadata, job.tags, job.priority) == (
        "scheduled",
        {"n": 1},
        {"m": 2},
        ["cron"],
        3,
    )
    # The executor's default max_attempts, not the model's.
    assert job.max_attempts == cron_jobs.CronTick.max_attempts == 2
    ticks = CronTickRecord.objects.order_by("tick_at")
    assert [(t.name, t.tick_at, t.job_id) for t in ticks] == [
        ("every-second", j.scheduled_at, j.pk) for j in jobs
    ]


@pytest.mark.django_db
def test_a_second_scheduler_does_not_duplicate_ticks() -> None:
    first, second = scheduler(EVERY_SECOND), scheduler(EVERY_SECOND)
    start = at(2025, 1, 1, 9)
    first.run_pending(start)
    second.run_pending(start)
    first.run_pending(start + timedelta(seconds=5))
    second.run_pending(start + timedelta(seconds=7))
    scheduled = [j.scheduled_at for j in tick_jobs()]
    assert scheduled == [start + timedelta(seconds=s) for s in range(8)]
    entry = second.entries[0]
    assert second.fire(entry, start + timedelta(seconds=3)) is None
    assert len(tick_jobs()) == 8


@pytest.mark.django_db
def test_missed_ticks_are_not_backfilled() -> None:
    # Ticks at 09:00 and 10:00 passed while no worker ran; one starting at 10:20 waits for 11:00.
    cron = scheduler({"executor": TICK, "schedule": "0 * * * *"})
    assert cron.run_pending(at(2025, 1, 1, 10, 20)) == at(2025, 1, 1, 11)
    assert tick_jobs() == []
    cron.run_pending(at(2025, 1, 1, 11, 0, 2))
    assert [j.scheduled_at for j in tick_jobs()] == [at(2025, 1, 1, 11)]


@pytest.mark.django_db
def test_a_stalled_scheduler_skips_ticks_older_than_the_grace() -> None:
    cron = scheduler(EVERY_SECOND)
    start = at(2025, 1, 1, 9)
    cron.run_pending(start - timedelta(milliseconds=500))
    assert tick_jobs() == []
    # The process was suspended for an hour: only the last MISFIRE_GRACE of ticks run.
    late = start + timedelta(hours=1)
    cron.run_pending(late)
    scheduled = [j.scheduled_at for j in tick_jobs()]
    assert len(scheduled) == MISFIRE_GRACE.total_seconds() + 1
    assert scheduled[0] == late - MISFIRE_GRACE
    assert scheduled[-1] == late


@pytest.mark.django_db
def test_removing_an_entry_stops_it() -> None:
    start = at(2025, 1, 1, 9)
    other = {"name": "other", "executor": TICK, "schedule": "* * * * * *", "data": "other"}
    both = scheduler(EVERY_SECOND, other)
    both.run_pending(start)
    both.run_pending(start + timedelta(seconds=2))
    # The workers restart with "other" removed from the settings.
    with cron_settings(EVERY_SECOND):
        after = CronScheduler.from_settings(DjangoBackend())
    assert after is not None
    after.run_pending(start + timedelta(seconds=3))
    after.run_pending(start + timedelta(seconds=5))
    data = [j.data for j in tick_jobs()]
    assert data.count("other") == 3
    assert data.count(None) == 6


@pytest.mark.django_db
def test_old_tick_rows_are_cleaned_up() -> None:
    now = at(2025, 1, 1, 9)
    old = CronTickRecord.objects.create(name="gone", tick_at=now - TICK_RETENTION * 2)
    recent = CronTickRecord.objects.create(name="kept", tick_at=now - timedelta(hours=1))
    scheduler(EVERY_SECOND).run_pending(now)
    remaining = set(CronTickRecord.objects.values_list("pk", flat=True))
    assert old.pk not in remaining
    assert recent.pk in remaining


@pytest.mark.django_db
def test_entries_in_other_zones_tick_at_their_wall_clock() -> None:
    paris = {"executor": TICK, "schedule": "0 9 * * *", "timezone": "Europe/Paris"}
    cron = scheduler(paris)
    assert cron.run_pending(at(2025, 1, 15, 7)) == at(2025, 1, 15, 8)
    cron.run_pending(at(2025, 1, 15, 8, 0, 1))
    assert [j.scheduled_at for j in tick_jobs()] == [at(2025, 1, 15, 8)]


def test_schedulers_sharing_an_in_memory_backend_do_not_duplicate() -> None:
    backend = InMemoryBackend()
    found, _ = parse_entries([EVERY_SECOND])
    first, second = CronScheduler(backend, found), CronScheduler(backend, found)
    start = at(2025, 1, 1, 9)
    for cron in (first, second):
        cron.run_pending(start)
        cron.run_pending(start + timedelta(seconds=3))
    scheduled = sorted(j.scheduled_at for j in backend.query(Where.all()))
    assert scheduled == [start + timedelta(seconds=s) for s in range(4)]


@pytest.mark.django_db(transaction=True)
def test_racing_schedulers_produce_one_job_per_tick() -> None:
    """Schedulers in threads (each with its own database connection) fire the same ticks at
    the same moment: the tick table's unique constraint lets exactly one win each."""
    entry = parse_entries([EVERY_SECOND])[0][0]
    ticks = [at(2025, 1, 1, 9, 0, s) for s in range(5)]
    workers = 4
    barrier = threading.Barrier(workers)
    won: list[int] = []
    failures: list[BaseException] = []

    def race() -> None:
        try:
            cron = CronScheduler(DjangoBackend(), [entry])
            for tick in ticks:
                barrier.wait(timeout=30)
                if cron.fire(entry, tick) is not None:
                    won.append(1)
        except Exception as exc:  # noqa: BLE001 - re-raised by the main thread's assert
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(won) == len(ticks)
    assert [j.scheduled_at for j in tick_jobs()] == ticks


# -- manage.py rexecutor_cron ----------------------------------------------------------------


def test_cron_command_lists_entries_with_next_runs_in_their_zone() -> None:
    entries = [
        {
            "name": "morning",
            "executor": TICK,
            "schedule": "0 9 * * 1-5",
            "timezone": "Europe/Paris",
        },
        EVERY_SECOND,
    ]
    out = StringIO()
    with cron_settings(*entries):
        call_command(
            "rexecutor_cron", "--count", "2", "--now", "2025-01-15T07:00:00+00:00", stdout=out
        )
    text = out.getvalue()
    assert "morning" in text
    assert "At 09:00, Monday through Friday" in text
    assert "Europe/Paris" in text
    # Next runs in the entry's zone: Wed 15 and Thu 16 January at 09:00 CET.
    assert "2025-01-15 09:00:00 CET" in text
    assert "2025-01-16 09:00:00 CET" in text
    assert "every-second" in text
    assert "Every second" in text
    assert "2025-01-15 07:00:01 UTC" in text


def test_cron_command_without_entries() -> None:
    out = StringIO()
    with override_settings(REXECUTOR={}):
        call_command("rexecutor_cron", stdout=out)
    assert "No cron entries" in out.getvalue()


# -- one failing entry -----------------------------------------------------------------------


class RefusingBackend(DjangoBackend):
    """Refuses to enqueue jobs of one executor, as a full disk or a bug in it could."""

    def enqueue(self, job: EnqueuableJob) -> JobId:
        if job.executor == cron_jobs.CronOther.name:
            raise ValueError("cannot enqueue this one")
        return super().enqueue(job)


@pytest.mark.django_db
def test_an_entry_that_fails_is_logged_and_the_others_still_fire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries, problems = parse_entries(
        [
            {"name": "failing", "executor": cron_jobs.CronOther.name, "schedule": "* * * * * *"},
            EVERY_SECOND,
        ]
    )
    assert not problems
    cron = CronScheduler(RefusingBackend(), entries)
    start = at(2025, 1, 1, 9)
    cron.run_pending(start)
    with caplog.at_level("ERROR", logger="django_rexecutor.cron"):
        wake = cron.run_pending(start + timedelta(seconds=2))
    assert [j.scheduled_at for j in tick_jobs()] == [start + timedelta(seconds=s) for s in range(3)]
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "cron failing: could not enqueue" in record.getMessage()
    assert "cannot enqueue this one" in (record.exc_text or "")
    # The failing entry waits before it tries again: no busy loop on it.
    assert wake == start + timedelta(seconds=3)
    caplog.clear()
    cron.run_pending(start + timedelta(seconds=4))
    assert len(tick_jobs()) == 5
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "not retried yet"
    cron.run_pending(start + timedelta(seconds=2) + RETRY_AFTER_ERROR)
    assert [r.levelname for r in caplog.records].count("ERROR") == 1, "retried after the delay"


def test_a_failing_entry_does_not_stop_the_pruner_in_the_worker() -> None:
    from django_rexecutor.worker.plugins import PluginRunner

    class Refusing(InMemoryBackend):
        def enqueue(self, job: EnqueuableJob) -> JobId:
            if job.executor == cron_jobs.CronOther.name:
                raise ValueError("cannot enqueue this one")
            return super().enqueue(job)

    backend = Refusing()
    old = backend.enqueue(cron_jobs.CronTick.builder().build())  # for the pruner to delete
    [job] = backend.claim_jobs("w", {TICK: 1}, 1)
    backend.mark_job_complete(job.id, claim=Claim.of(job))
    entries, _ = parse_entries(
        [
            {"name": "failing", "executor": cron_jobs.CronOther.name, "schedule": "* * * * * *"},
            {"name": "works", "executor": cron_jobs.CronWork.name, "schedule": "* * * * * *"},
        ]
    )
    every_second = CronSchedule.parse("* * * * * *", "UTC")
    spec = PruneSpec((PruneRule(JobStatus.COMPLETE, max_length=0),))
    runner = PluginRunner(
        backend, [CronScheduler(backend, entries), Pruner(backend, spec, every_second)]
    )
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            works = backend.query(Where.all())
            if old not in [j.id for j in works] and any(
                j.executor == cron_jobs.CronWork.name for j in works
            ):
                break
            time.sleep(0.05)
    finally:
        runner.stop()
    remaining = backend.query(Where.all())
    assert old not in [j.id for j in remaining], "the pruner ran"
    assert {j.executor for j in remaining} == {cron_jobs.CronWork.name}
