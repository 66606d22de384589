"""Uniqueness rules on the database: what matches, what a conflict replaces, and that
simultaneous enqueues from many connections leave exactly one job."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from django_rexecutor import Executor, Job, JobId, JobStatus, Replace, UniquenessCriteria
from django_rexecutor.models import JobRecord
from tests.concurrency import hammer

pytestmark = pytest.mark.django_db

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


class Mail(Executor):
    name = "tests.uniqueness.mail"

    def execute(self, job: Job) -> None:
        return None


class Sms(Executor):
    name = "tests.uniqueness.sms"

    def execute(self, job: Job) -> None:
        return None


class Digest(Executor):
    """Unique per executor by default."""

    name = "tests.uniqueness.digest"
    uniqueness_criteria = UniquenessCriteria.by_executor()

    def execute(self, job: Job) -> None:
        return None


def _set_status(job_id: int, status: JobStatus) -> None:
    JobRecord.objects.filter(pk=job_id).update(status=status, attempt=1)


def _count(*executors: type[Executor]) -> int:
    return JobRecord.objects.filter(executor__in=[e.name for e in executors]).count()


def test_a_key_matches_jobs_of_every_executor_unless_and_executor() -> None:
    first = Mail.enqueue(unique=UniquenessCriteria.by_key({"user": 1}))
    across = Sms.enqueue(unique=UniquenessCriteria.by_key({"user": 1}))
    assert (across, across.inserted) == (first, False)
    own = Sms.enqueue(unique=UniquenessCriteria.by_key({"user": 1}).and_executor())
    assert own.inserted and own != first
    again = Sms.enqueue(unique=UniquenessCriteria.by_key({"user": 1}).and_executor())
    assert (again, again.inserted) == (own, False)
    assert _count(Mail, Sms) == 2


def test_keys_compare_as_json_values() -> None:
    first = Mail.enqueue(unique=UniquenessCriteria.by_key({"a": 1, "b": [1, 2]}))
    reordered = Mail.enqueue(unique=UniquenessCriteria.by_key({"b": (1, 2), "a": 1}))
    assert (reordered, reordered.inserted) == (first, False)
    for different in ({"a": 1}, {"a": "1", "b": [1, 2]}, {"a": 1, "b": [2, 1]}, 1, "1", None):
        assert Mail.enqueue(unique=UniquenessCriteria.by_key(different)).inserted, different
    assert _count(Mail) == 7


def test_a_key_never_matches_a_job_enqueued_without_one() -> None:
    Mail.enqueue({"user": 1})
    assert Mail.enqueue(unique=UniquenessCriteria.by_key({"user": 1})).inserted


def test_by_executor_matches_an_earlier_plain_job() -> None:
    plain = Mail.enqueue()
    matched = Mail.enqueue(unique=UniquenessCriteria.by_executor())
    assert (matched, matched.inserted) == (plain, False)
    assert Sms.enqueue(unique=UniquenessCriteria.by_executor()).inserted


def test_the_window_is_inclusive_on_both_sides() -> None:
    rule = UniquenessCriteria.by_key("w").within(timedelta(minutes=10))
    first = Mail.enqueue(schedule_at=T0, unique=rule)
    for edge in (T0 + timedelta(minutes=10), T0 - timedelta(minutes=10), T0):
        matched = Mail.enqueue(schedule_at=edge, unique=rule)
        assert (matched, matched.inserted) == (first, False), edge
    outside = T0 + timedelta(minutes=10, microseconds=1)
    assert Mail.enqueue(schedule_at=outside, unique=rule).inserted
    assert Mail.enqueue(schedule_at=T0 - timedelta(minutes=11), unique=rule).inserted
    assert _count(Mail) == 3


def test_only_scheduled_jobs_count_by_default() -> None:
    rule = UniquenessCriteria.by_key("s")
    first = Mail.enqueue(unique=rule)
    for status in (JobStatus.EXECUTING, JobStatus.RETRYABLE, JobStatus.COMPLETE):
        _set_status(first, status)
        assert Mail.enqueue(unique=rule.and_executor()).inserted, status
        JobRecord.objects.exclude(pk=first).delete()


def test_by_statuses_chooses_which_existing_jobs_count() -> None:
    first = Mail.enqueue(unique=UniquenessCriteria.by_key("st"))
    _set_status(first, JobStatus.COMPLETE)
    rule = UniquenessCriteria.by_key("st").and_statuses(["complete", JobStatus.DISCARDED])
    assert Mail.enqueue(unique=rule) == first
    _set_status(first, JobStatus.DISCARDED)
    assert Mail.enqueue(unique=rule) == first
    _set_status(first, JobStatus.CANCELLED)
    assert Mail.enqueue(unique=rule).inserted
    assert UniquenessCriteria.by_statuses(["retryable"]).statuses == {JobStatus.RETRYABLE}


def test_replace_overwrites_exactly_the_named_fields() -> None:
    first = Mail.enqueue(
        {"v": 1},
        metadata={"m": 1},
        tags=["old"],
        priority=5,
        max_attempts=3,
        schedule_at=T0,
        unique=UniquenessCriteria.by_key("r"),
    )
    replace = Replace.priority().and_data().and_metadata().and_scheduled_at()
    later = T0 + timedelta(days=1)
    matched = Mail.enqueue(
        {"v": 2},
        metadata={"m": 2},
        tags=["new"],
        priority=1,
        max_attempts=9,
        schedule_at=later,
        unique=UniquenessCriteria.by_key("r").on_conflict(replace),
    )
    assert (matched, matched.inserted) == (first, False)
    job = Mail.get_job(first)
    assert (job.data, job.metadata, job.priority, job.scheduled_at) == (
        {"v": 2},
        {"m": 2},
        1,
        later,
    )
    assert (job.tags, job.max_attempts) == (["old"], 3)
    Mail.enqueue(
        max_attempts=8, unique=UniquenessCriteria.by_key("r").on_conflict(Replace.max_attempts())
    )
    assert Mail.get_job(first).max_attempts == 8
    assert _count(Mail) == 1


def test_replace_only_applies_to_its_statuses() -> None:
    first = Mail.enqueue({"v": 1}, unique=UniquenessCriteria.by_key("rs"))
    _set_status(first, JobStatus.RETRYABLE)
    rule = UniquenessCriteria.by_key("rs").and_statuses(["scheduled", "retryable"])
    # Matched (nothing inserted) but not replaced: Replace defaults to scheduled jobs only.
    untouched = Mail.enqueue({"v": 2}, unique=rule.on_conflict(Replace.data()))
    assert (untouched, untouched.inserted) == (first, False)
    assert Mail.get_job(first).data == {"v": 1}
    replaced = Mail.enqueue(
        {"v": 3}, unique=rule.on_conflict(Replace.data().for_statuses(["retryable"]))
    )
    assert (replaced, replaced.inserted) == (first, False)
    assert Mail.get_job(first).data == {"v": 3}
    # on_conflict_do_nothing() takes a Replace back out.
    Mail.enqueue({"v": 4}, unique=rule.on_conflict(Replace.data()).on_conflict_do_nothing())
    assert Mail.get_job(first).data == {"v": 3}


def test_the_executor_default_applies_and_none_opts_out() -> None:
    first = Digest.enqueue()
    assert Digest.enqueue() == first
    assert not Digest.enqueue().inserted
    opted_out = Digest.enqueue(unique=UniquenessCriteria.none())
    assert opted_out.inserted and opted_out != first
    # A per-job rule replaces the default instead of adding to it.
    keyed = Digest.enqueue(unique=UniquenessCriteria.by_key("digest"))
    assert keyed.inserted
    assert _count(Digest) == 3


def test_builders_reject_bad_rules() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        UniquenessCriteria.within(-5)
    with pytest.raises(TypeError, match="not the string 'scheduled'"):
        UniquenessCriteria.by_statuses("scheduled")
    with pytest.raises(ValueError, match="at least one status"):
        Replace.data().for_statuses([])
    with pytest.raises(TypeError, match="on_conflict takes a Replace"):
        UniquenessCriteria.by_key(1).on_conflict("data")  # type: ignore[arg-type]


def test_key_hashes_and_lock_ids_are_stable_across_processes() -> None:
    """Every worker and web process must agree on them: no salted ``hash()``."""
    rule = UniquenessCriteria.by_key({"user": 42, "tags": ["a", "é"]})
    code = (
        "from django_rexecutor.uniqueness import UniquenessCriteria as U;"
        "r = U.by_key({'tags': ['a', 'é'], 'user': 42});"
        "print(r.key_hash, r.lock_id('tests.uniqueness.mail'))"
    )
    # This process runs with a random hash seed; the child with a fixed one.
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    ).stdout.split()
    assert out == [rule.key_hash, str(rule.lock_id(Mail.name))]
    assert -(2**63) <= rule.lock_id(Mail.name) < 2**63


# -- concurrency -------------------------------------------------------------------------------


def _assert_exactly_one(results: list[JobId], executors: list[type[Executor]]) -> None:
    stored = list(JobRecord.objects.filter(executor__in=[e.name for e in executors]))
    assert len(stored) == 1
    assert {int(r) for r in results} == {stored[0].pk}
    assert sum(r.inserted for r in results) == 1


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_simultaneous_unique_enqueues_leave_one_job_on_a_database_server() -> None:
    rule = UniquenessCriteria.by_key({"order": 7}).and_executor()
    results = hammer(8, 25, lambda: Mail.enqueue({"order": 7}, unique=rule))
    assert len(results) == 200
    _assert_exactly_one(results, [Mail])


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_simultaneous_enqueues_with_related_rules_leave_one_job_on_a_database_server() -> None:
    # Rules naming the same key, with and without the executor, match each other's jobs and
    # so must serialise against each other too.
    rules = [UniquenessCriteria.by_key("mixed"), UniquenessCriteria.by_key("mixed").and_executor()]
    counter = iter(range(10**6))
    results = hammer(8, 10, lambda: Mail.enqueue(unique=rules[next(counter) % 2]))
    _assert_exactly_one(results, [Mail])


@pytest.mark.django_db(transaction=True)
def test_enqueues_from_several_threads_leave_one_job() -> None:
    """The small cross-thread version, on every database (SQLite queues writers on its lock)."""
    rule = UniquenessCriteria.by_key("threads")
    executors = [Mail, Sms]
    counter = iter(range(10**6))
    results = hammer(4, 5, lambda: executors[next(counter) % 2].enqueue(unique=rule))
    assert len(results) == 20
    _assert_exactly_one(results, executors)
