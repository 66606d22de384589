"""``JobBuilder``: the fluent way to describe and enqueue one job of an executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from . import signals
from .backends import resolve_backend
from .backends.base import Backend, EnqueuableJob
from .backoff import to_timedelta
from .conf import rexecutor_settings
from .encoding import to_json_native
from .job import JobId
from .limits import partition_key, partition_paths
from .middleware import enqueue_through
from .uniqueness import UniquenessCriteria
from .validation import check_aware, check_max_attempts, check_priority, check_tags

if TYPE_CHECKING:
    from .executor import Executor

#: Options accepted by ``Executor.enqueue`` and by ``enqueue_many`` dict items.
BUILDER_OPTIONS = frozenset(
    {"data", "metadata", "tags", "priority", "max_attempts", "schedule_at", "schedule_in", "unique"}
)


#: Options whose checks are independent of each other and of the clock: a dict of only these
#: becomes a job without intermediate builders (see ``job_from_options``).
_PLAIN_OPTIONS = frozenset({"data", "metadata", "tags", "priority", "max_attempts"})


def job_from_options(
    executor: type[Executor], options: dict[str, Any], now: datetime
) -> EnqueuableJob | None:
    """``executor.builder().apply(options).build()`` with the same checks but none of the
    intermediate frozen builders, which dominate the CPU cost of an enqueue. ``None`` when
    ``options`` holds anything else (scheduling, uniqueness): the caller takes the builder."""
    if not _PLAIN_OPTIONS.issuperset(options):
        return None
    return _PlainJobs(executor, now).job(options)


class _PlainJobs:
    """``job_from_options`` for many option dicts of one executor: what does not depend on
    the dict (its name, defaults, uniqueness rule, partition paths: settings lookups) is
    looked up once."""

    def __init__(self, executor: type[Executor], now: datetime) -> None:
        uniqueness = executor.uniqueness_criteria
        self.name = executor.name
        self.max_attempts = executor.max_attempts
        self.uniqueness = None if uniqueness is None or uniqueness.disabled else uniqueness
        self.paths = partition_paths(executor)
        self.now = now

    def job(self, options: dict[str, Any]) -> EnqueuableJob:
        """The job of ``options``, which holds only ``_PLAIN_OPTIONS``."""
        data = to_json_native(options.get("data"), what="data")
        metadata = (
            to_json_native(options["metadata"], what="metadata") if "metadata" in options else None
        )
        paths = self.paths
        return EnqueuableJob(
            self.name,
            data,
            metadata,
            check_max_attempts(options["max_attempts"])
            if "max_attempts" in options
            else self.max_attempts,
            self.now,
            tuple(check_tags(options["tags"])) if "tags" in options else (),
            check_priority(options["priority"]) if "priority" in options else 0,
            self.uniqueness,
            partition_key(paths, data, metadata) if paths else "",
        )


def jobs_from_items(
    executor: type[Executor], items: Iterable[JobBuilder | dict[str, Any]]
) -> list[EnqueuableJob]:
    """The validated jobs of ``enqueue_many``'s items, in order: a dict of plain options
    becomes a job directly (``job_from_options``), anything else goes through a builder."""
    now = timezone.now()
    plain = _PlainJobs(executor, now)
    plain_job, plain_options, as_builder = (
        plain.job,
        _PLAIN_OPTIONS.issuperset,
        executor._as_builder,
    )
    return [
        plain_job(item)
        if isinstance(item, dict) and plain_options(item)
        else as_builder(item, index).build()
        for index, item in enumerate(items)
    ]


def enqueue_options(
    executor: type[Executor], options: dict[str, Any], backend: Backend | None, using: str | None
) -> JobId:
    """``executor.builder().apply(options).enqueue(…)``, without the builders when the
    options are plain (``job_from_options``)."""
    job = job_from_options(executor, options, timezone.now())
    if job is None:
        return executor.builder().apply(options).enqueue(backend=backend, using=using)
    return enqueue_job(executor, job, backend, using)


def enqueue_job(
    executor: type[Executor], job: EnqueuableJob, backend: Backend | None, using: str | None
) -> JobId:
    """Insert the built ``job`` through the middleware's ``around_enqueue``, then announce it."""
    target = resolve_backend(backend, using)
    if rexecutor_settings.get("MIDDLEWARE"):
        (job_id,) = enqueue_through([job], lambda jobs: [target.enqueue(jobs[0])])
    else:
        job_id = target.enqueue(job)
    signals.job_enqueued.send(sender=executor, job_id=job_id, job=job)
    return job_id


@dataclass(frozen=True)
class JobBuilder:
    """Immutable: every ``with_*`` returns a new builder, so a partly built one can be reused.
    Each value is checked when it is given, so a bad one fails at the line that passed it."""

    executor: type[Executor]
    data: Any = None
    metadata: Any = None
    tags: tuple[str, ...] = ()
    priority: int = 0
    max_attempts: int | None = None
    scheduled_at: datetime | None = None
    schedule_delay: timedelta | None = None
    uniqueness: UniquenessCriteria | None = field(default=None)

    def with_data(self, data: Any) -> JobBuilder:
        return replace(self, data=to_json_native(data, what="data"))

    def with_metadata(self, metadata: Any) -> JobBuilder:
        return replace(self, metadata=to_json_native(metadata, what="metadata"))

    def with_tags(self, tags: Iterable[str]) -> JobBuilder:
        return replace(self, tags=tuple(check_tags(tags)))

    def add_tag(self, tag: str) -> JobBuilder:
        return replace(self, tags=tuple(check_tags([*self.tags, tag])))

    def with_priority(self, priority: int) -> JobBuilder:
        return replace(self, priority=check_priority(priority))

    def with_max_attempts(self, max_attempts: int) -> JobBuilder:
        return replace(self, max_attempts=check_max_attempts(max_attempts))

    def schedule_at(self, at: datetime) -> JobBuilder:
        """Run at ``at`` (a moment in the past means due now)."""
        return replace(self, scheduled_at=check_aware(at, name="schedule_at"), schedule_delay=None)

    def schedule_in(self, delay: timedelta | float) -> JobBuilder:
        """Run ``delay`` after enqueue; the delay is measured when ``enqueue`` is called."""
        if isinstance(delay, timedelta) and delay < timedelta(0):
            delay = timedelta(0)  # in the past means due now
        elif isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay < 0:
            delay = 0
        delta = to_timedelta(delay, name="schedule_in")
        try:
            timezone.now() + delta
        except OverflowError:
            raise ValueError(
                f"schedule_in({delta!r}) reaches past the last datetime (year 9999); "
                "pass a shorter delay."
            ) from None
        return replace(self, schedule_delay=delta, scheduled_at=None)

    def unique(self, criteria: UniquenessCriteria) -> JobBuilder:
        if not isinstance(criteria, UniquenessCriteria):
            raise TypeError(f"unique() takes a UniquenessCriteria, got {criteria!r}.")
        return replace(self, uniqueness=criteria)

    def apply(self, options: dict[str, Any]) -> JobBuilder:
        """Apply keyword options (``data=…, tags=…``), rejecting unknown ones by name."""
        unknown = set(options) - BUILDER_OPTIONS
        if unknown:
            raise TypeError(
                f"Unknown job option(s) {sorted(unknown)}; expected some of "
                f"{sorted(BUILDER_OPTIONS)}."
            )
        builder = self
        setters: dict[str, Callable[[JobBuilder, Any], JobBuilder]] = {
            "data": JobBuilder.with_data,
            "metadata": JobBuilder.with_metadata,
            "tags": JobBuilder.with_tags,
            "priority": JobBuilder.with_priority,
            "max_attempts": JobBuilder.with_max_attempts,
            "schedule_at": JobBuilder.schedule_at,
            "schedule_in": JobBuilder.schedule_in,
            "unique": JobBuilder.unique,
        }
        for name, value in options.items():
            builder = setters[name](builder, value)
        return builder

    def build(self) -> EnqueuableJob:
        """The validated job description a backend inserts."""
        now = timezone.now()
        if self.scheduled_at is not None:
            scheduled_at = self.scheduled_at
        elif self.schedule_delay is not None:
            scheduled_at = now + self.schedule_delay
        else:
            scheduled_at = now
        uniqueness = self.uniqueness or self.executor.uniqueness_criteria
        return EnqueuableJob(
            executor=self.executor.name,
            data=self.data,
            metadata=self.metadata,
            max_attempts=self.max_attempts or self.executor.max_attempts,
            scheduled_at=scheduled_at,
            tags=self.tags,
            priority=self.priority,
            uniqueness=None if uniqueness is None or uniqueness.disabled else uniqueness,
            partition_key=partition_key(partition_paths(self.executor), self.data, self.metadata),
        )

    def enqueue(self, *, backend: Backend | None = None, using: str | None = None) -> JobId:
        """Insert the job (in the caller's transaction on database backends)."""
        target = resolve_backend(backend, using)
        return enqueue_job(self.executor, self.build(), target, None)

    async def aenqueue(self, *, backend: Backend | None = None, using: str | None = None) -> JobId:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.enqueue)(backend=backend, using=using)
