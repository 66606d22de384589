"""``JobBuilder``: the fluent way to describe and enqueue one job of an executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

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
    intermediate frozen builders, which dominate the CPU cost of a bulk enqueue. ``None`` when
    ``options`` holds anything else (scheduling, uniqueness): the caller takes the builder."""
    if not _PLAIN_OPTIONS.issuperset(options):
        return None
    uniqueness = executor.uniqueness_criteria
    data = to_json_native(options.get("data"), what="data")
    metadata = to_json_native(options.get("metadata"), what="metadata")
    paths = partition_paths(executor)
    return EnqueuableJob(
        executor=executor.name,
        data=data,
        metadata=metadata,
        max_attempts=check_max_attempts(options["max_attempts"])
        if "max_attempts" in options
        else executor.max_attempts,
        scheduled_at=now,
        tags=tuple(check_tags(options["tags"])) if "tags" in options else (),
        priority=check_priority(options["priority"]) if "priority" in options else 0,
        uniqueness=None if uniqueness is None or uniqueness.disabled else uniqueness,
        partition_key=partition_key(paths, data, metadata) if paths else "",
    )


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
        from . import signals

        target = resolve_backend(backend, using)
        job = self.build()
        if rexecutor_settings.MIDDLEWARE:
            (job_id,) = enqueue_through([job], lambda jobs: [target.enqueue(jobs[0])])
        else:
            job_id = target.enqueue(job)
        signals.job_enqueued.send(sender=self.executor, job_id=job_id, job=job)
        return job_id

    async def aenqueue(self, *, backend: Backend | None = None, using: str | None = None) -> JobId:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.enqueue)(backend=backend, using=using)
