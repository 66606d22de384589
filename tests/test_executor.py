"""Executors: definition and registry rules, defaults and hooks, and the class-level API
(which only ever touches jobs of its own executor), with its async twins."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from django_rexecutor import (
    BackoffStrategy,
    ConfigurationError,
    EncodeDecodeError,
    ExecutionError,
    Executor,
    InMemoryBackend,
    InvalidTransition,
    Job,
    JobNotFound,
    JobStatus,
    RexecutorError,
    Snooze,
    Where,
)
from django_rexecutor.backends import use_backend
from django_rexecutor.models import JobRecord
from django_rexecutor.registry import all_executors, autodiscover, get_executor, unregister


class Invoice(Executor):
    name = "tests.executor.invoice"
    max_attempts = 3

    def execute(self, job: Job) -> None:
        return None


class Receipt(Executor):
    name = "tests.executor.receipt"

    def execute(self, job: Job) -> None:
        return None


@pytest.fixture
def forget() -> Any:
    """Unregisters the executor names a test defines, so the registry stays as it was."""
    names: list[str] = []
    yield names.append
    for name in names:
        unregister(name)


# -- definition and registry -----------------------------------------------------------------


def test_defined_executors_are_registered_by_name() -> None:
    assert get_executor("tests.executor.invoice") is Invoice
    registered = all_executors()
    assert registered[Receipt.name] is Receipt
    assert list(registered) == sorted(registered)


def test_an_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=r"No executor is named .nope.*invoice"):
        get_executor("nope")


def test_an_executor_without_a_name_is_an_error_at_definition() -> None:
    with pytest.raises(ConfigurationError, match="Nameless needs a `name` class attribute"):

        class Nameless(Executor):
            def execute(self, job: Job) -> None:
                return None

    with pytest.raises(ConfigurationError, match="`name`"):

        class Blank(Executor):
            name = "  "

            def execute(self, job: Job) -> None:
                return None


def test_a_duplicate_name_is_an_error_at_definition() -> None:
    with pytest.raises(
        ConfigurationError, match=r"Two executors are named .tests\.executor\.invoice."
    ):

        class Impostor(Executor):
            name = "tests.executor.invoice"

            def execute(self, job: Job) -> None:
                return None

    # A subclass of a concrete executor inherits its name, so it must choose its own.
    with pytest.raises(ConfigurationError, match=r"test_executor\.Invoice and .*Child"):

        class Child(Invoice):
            pass

    assert get_executor(Invoice.name) is Invoice


def test_the_same_class_defined_again_replaces_itself(forget: Any) -> None:
    """What happens when a module is imported twice (autoreload, two import paths)."""
    forget("tests.executor.reimported")

    def define() -> type[Executor]:
        return type(
            "Reimported",
            (Executor,),
            {
                "name": "tests.executor.reimported",
                "__module__": __name__,
                "__qualname__": "Reimported",
                "execute": lambda self, job: None,
            },
        )

    first, second = define(), define()
    assert first is not second
    assert get_executor("tests.executor.reimported") is second


def test_abstract_bases_share_defaults(forget: Any) -> None:
    forget("tests.executor.concrete")

    class Base(Executor, abstract=True):
        max_attempts = 2

        def execute(self, job: Job) -> None:
            return None

    class Concrete(Base):
        name = "tests.executor.concrete"

    assert get_executor("tests.executor.concrete") is Concrete
    assert Concrete.max_attempts == 2
    assert "Base" not in {cls.__name__ for cls in all_executors().values()}


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"max_attempts": 0}, "max_attempts: max_attempts must be at least 1, got 0"),
        ({"max_attempts": "5"}, "max_attempts must be an int, got '5'"),
        ({"max_concurrency": 0}, "max_concurrency must be a positive int or None, got 0"),
        ({"max_concurrency": 2.5}, "got 2.5"),
        ({"name": "x" * 256}, "longer than 255"),
    ],
)
def test_bad_class_attributes_are_errors_at_definition(
    forget: Any, attributes: dict[str, Any], message: str
) -> None:
    forget("tests.executor.bad")
    body = {"name": "tests.executor.bad", "execute": lambda self, job: None, **attributes}
    with pytest.raises(ConfigurationError, match=message):
        type("Bad", (Executor,), body)
    with pytest.raises(ConfigurationError):
        get_executor("tests.executor.bad")


def test_an_executor_without_execute_is_an_error(forget: Any) -> None:
    forget("tests.executor.lazy")
    with pytest.raises(ConfigurationError, match="Lazy must define execute"):

        class Lazy(Executor):
            name = "tests.executor.lazy"


def test_configuration_errors_are_rexecutor_errors() -> None:
    assert issubclass(ConfigurationError, RexecutorError)


def test_autodiscover_imports_jobs_modules_of_installed_apps() -> None:
    sys.modules.pop("demo.jobs", None)
    autodiscover()
    assert "demo.jobs" in sys.modules


# -- defaults and hooks --------------------------------------------------------------------------


def _job(attempt: int) -> Job:
    now = timezone.now()
    return Job(
        id=1,
        status=JobStatus.EXECUTING,
        executor=Invoice.name,
        data=None,
        metadata=None,
        attempt=attempt,
        max_attempts=5,
        priority=0,
        tags=[],
        errors=[],
        inserted_at=now,
        scheduled_at=now,
    )


def test_default_backoff_is_exponential_base_4s_factor_4_with_10_percent_jitter() -> None:
    executor = Invoice()
    for attempt, seconds in [(1, 4), (2, 16), (3, 64), (4, 256)]:
        delays = {executor.backoff(_job(attempt)).total_seconds() for _ in range(50)}
        assert all(seconds * 0.9 <= d <= seconds * 1.1 for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered
    week = timedelta(days=7)
    for attempt in (12, 20, 10_000):
        delay = executor.backoff(_job(attempt))
        assert week * 0.9 <= delay <= week


def test_default_timeout_is_none_and_hooks_can_be_overridden(forget: Any) -> None:
    assert Invoice().timeout(_job(1)) is None
    forget("tests.executor.custom")

    class Custom(Executor):
        name = "tests.executor.custom"
        backoff_strategy = BackoffStrategy.constant(30)

        def timeout(self, job: Job) -> timedelta | None:
            return timedelta(seconds=job.attempt)

        def execute(self, job: Job) -> None:
            return None

    assert Custom().backoff(_job(7)) == timedelta(seconds=30)
    assert Custom().timeout(_job(3)) == timedelta(seconds=3)
    assert (Custom.max_attempts, Custom.max_concurrency, Custom.uniqueness_criteria) == (
        5,
        None,
        None,
    )


def test_outcome_values() -> None:
    assert ExecutionError("x").error_type == "error"

    class Declined(ExecutionError):
        error_type = "payment_declined"

    assert Declined("no").error_type == "payment_declined"
    assert Declined("no", error_type="fraud").error_type == "fraud"
    assert Snooze(90).delay == timedelta(seconds=90)
    with pytest.raises(ValueError, match="Snooze delay"):
        Snooze(-1)


# -- the class-level API ------------------------------------------------------------------------


@pytest.fixture
def jobs(db: None) -> dict[str, int]:
    """One waiting job of each executor."""
    return {"invoice": Invoice.enqueue({"n": 1}), "receipt": Receipt.enqueue({"n": 2})}


def _status(job_id: int) -> str:
    return str(JobRecord.objects.get(pk=job_id).status)


def test_cancel_job(jobs: dict[str, int]) -> None:
    job = Invoice.cancel_job(jobs["invoice"], "customer left")
    assert job.status == JobStatus.CANCELLED and job.cancelled_at is not None
    [error] = job.errors
    assert (error.attempt, error.error_type, error.message) == (0, "cancelled", "customer left")
    with pytest.raises(InvalidTransition, match=f"Cannot cancel job {jobs['invoice']}"):
        Invoice.cancel_job(jobs["invoice"])


def test_cancel_of_a_running_job_is_a_request(jobs: dict[str, int]) -> None:
    JobRecord.objects.filter(pk=jobs["invoice"]).update(status=JobStatus.EXECUTING, attempt=1)
    job = Invoice.cancel_job(jobs["invoice"], "stop")
    assert job.status == JobStatus.EXECUTING
    assert job.cancel_requested


def test_rerun_job(jobs: dict[str, int]) -> None:
    with pytest.raises(InvalidTransition, match="it is scheduled"):
        Invoice.rerun_job(jobs["invoice"])
    JobRecord.objects.filter(pk=jobs["invoice"]).update(
        status=JobStatus.DISCARDED, attempt=3, discarded_at=timezone.now()
    )
    job = Invoice.rerun_job(jobs["invoice"])
    assert (job.status, job.attempt, job.max_attempts) == (JobStatus.RETRYABLE, 3, 4)
    assert job.discarded_at is None and job.scheduled_at <= timezone.now()
    JobRecord.objects.filter(pk=jobs["invoice"]).update(status=JobStatus.EXECUTING)
    with pytest.raises(InvalidTransition, match="it is executing"):
        Invoice.rerun_job(jobs["invoice"])


def test_update_job(jobs: dict[str, int]) -> None:
    job = Invoice.get_job(jobs["invoice"])
    at = datetime(2032, 1, 1, tzinfo=UTC)
    job.data, job.metadata, job.tags = {"n": 10}, {"m": 1}, ["edited"]
    job.priority, job.max_attempts, job.scheduled_at = 4, 8, at
    job.attempt = 99  # not one of the fields update_job writes
    updated = Invoice.update_job(job)
    assert (updated.data, updated.metadata, updated.tags) == ({"n": 10}, {"m": 1}, ["edited"])
    assert (updated.priority, updated.max_attempts, updated.scheduled_at) == (4, 8, at)
    assert updated.attempt == 0
    job.data = {"when": timezone.now()}
    with pytest.raises(EncodeDecodeError, match="when"):
        Invoice.update_job(job)
    job.data, job.priority = {"n": 11}, -1
    with pytest.raises(ValueError, match="priority"):
        Invoice.update_job(job)
    assert Invoice.get_job(job.id).data == {"n": 10}
    JobRecord.objects.filter(pk=job.id).update(status=JobStatus.COMPLETE)
    job.priority = 0
    with pytest.raises(InvalidTransition, match="Cannot update"):
        Invoice.update_job(job)


def test_query_jobs_only_returns_this_executors_jobs(jobs: dict[str, int]) -> None:
    assert [j.id for j in Invoice.query_jobs()] == [jobs["invoice"]]
    assert [j.id for j in Receipt.query_jobs(Where.data_equals({"n": 2}))] == [jobs["receipt"]]
    assert Invoice.query_jobs(Where.data_equals({"n": 2})) == []
    assert Invoice.query_jobs(Where.id_in(jobs.values())) == [Invoice.get_job(jobs["invoice"])]
    # An Or at the top must not escape the executor restriction.
    everything = Where.id_equals(jobs["receipt"]) | Where.all()
    assert [j.id for j in Invoice.query_jobs(everything)] == [jobs["invoice"]]


def test_the_class_api_does_not_touch_other_executors_jobs(jobs: dict[str, int]) -> None:
    other = jobs["receipt"]
    job = Receipt.get_job(other)
    for call in (
        lambda: Invoice.get_job(other),
        lambda: Invoice.cancel_job(other, "no"),
        lambda: Invoice.rerun_job(other),
        lambda: Invoice.update_job(job),
    ):
        with pytest.raises(JobNotFound, match=f"Job {other} does not exist for executor"):
            call()
    assert Receipt.get_job(other) == job


@pytest.mark.parametrize("operation", ["get_job", "cancel_job", "rerun_job", "update_job"])
def test_a_missing_job_is_job_not_found(db: None, operation: str) -> None:
    missing = 10**12
    argument: Any = missing
    if operation == "update_job":
        argument = _job(0)
        argument.id = missing
    with pytest.raises(JobNotFound, match=f"Job {missing} does not exist") as info:
        getattr(Invoice, operation)(argument)
    assert info.value.job_id == missing
    assert isinstance(info.value, LookupError)


def test_backend_argument_targets_another_backend(db: None) -> None:
    memory = InMemoryBackend()
    job_id = Invoice.enqueue({"n": 1}, backend=memory)
    assert not JobRecord.objects.filter(executor=Invoice.name).exists()
    assert [j.id for j in Invoice.query_jobs(backend=memory)] == [job_id]
    assert Invoice.get_job(job_id, backend=memory).data == {"n": 1}
    assert Invoice.cancel_job(job_id, "x", backend=memory).status == JobStatus.CANCELLED
    with use_backend(memory):
        assert Invoice.rerun_job(job_id).status == JobStatus.SCHEDULED
        assert [j.id for j in Invoice.query_jobs()] == [job_id]
    assert Invoice.query_jobs() == []


def test_async_twins(jobs: dict[str, int]) -> None:
    """Run through ``async_to_sync`` so the database work happens on this test's connection."""

    async def scenario() -> None:
        new = await Invoice.aenqueue({"n": 3}, priority=2)
        built = await Invoice.builder().with_data({"n": 4}).aenqueue()
        many = await Invoice.aenqueue_many([{"data": 5}, Invoice.builder().with_data(6)])
        found = await Invoice.aquery_jobs(Where.data_equals({"n": 3}))
        assert [j.id for j in found] == [new] and found[0].priority == 2
        assert len(await Invoice.aquery_jobs()) == 5
        assert (await Invoice.aget_job(built)).data == {"n": 4}
        job = found[0]
        job.tags = ["async"]
        assert (await Invoice.aupdate_job(job)).tags == ["async"]
        cancelled = await Invoice.acancel_job(many[0], "async")
        assert cancelled.status == JobStatus.CANCELLED
        rerun = await Invoice.arerun_job(many[0])
        assert rerun.status == JobStatus.SCHEDULED
        with pytest.raises(JobNotFound):
            await Invoice.acancel_job(jobs["receipt"], "not mine")
        with pytest.raises(JobNotFound):
            await Invoice.aget_job(jobs["receipt"])

    async_to_sync(scenario)()
    assert JobRecord.objects.filter(executor=Invoice.name).count() == 5
