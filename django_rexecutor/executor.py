"""``Executor``: the base class of every kind of job.

A subclass names itself (``name``, stored with its jobs), sets its defaults and implements
``execute`` (sync or ``async def``). Subclasses register themselves when they are defined; the
class-level API (``enqueue``, ``cancel_job``, …) only ever touches jobs of that executor."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, ClassVar

from asgiref.sync import sync_to_async

from . import registry
from .backends import resolve_backend
from .backends.base import Backend
from .backoff import DEFAULT_BACKOFF, BackoffStrategy
from .builder import JobBuilder, enqueue_options, jobs_from_items
from .exceptions import ConfigurationError
from .job import Job, JobId
from .limits import RateLimit, limits_from
from .middleware import enqueue_through
from .outcomes import Outcome
from .query import Query, Where, for_executor
from .uniqueness import UniquenessCriteria
from .validation import check_max_attempts

#: Most jobs ``Executor.query_jobs`` returns unless told otherwise: a listing of a busy
#: executor must not read millions of rows into memory by accident. Page with ``after_id``.
QUERY_LIMIT = 1000


class Executor:
    """Subclass me::

    class SendWelcomeEmail(Executor):
        name = "send_welcome_email"
        max_attempts = 3

        def execute(self, job):
            ...
    """

    name: ClassVar[str]
    max_attempts: ClassVar[int] = 5
    #: Most jobs of this executor running at once in one worker process (None: no limit).
    max_concurrency: ClassVar[int | None] = None
    uniqueness_criteria: ClassVar[UniquenessCriteria | None] = None
    backoff_strategy: ClassVar[BackoffStrategy] = DEFAULT_BACKOFF
    #: Most jobs of this executor executing at once across all workers (None: no limit).
    global_concurrency: ClassVar[int | None] = None
    #: Most starts of this executor's jobs in any window (None: no limit).
    rate_limit: ClassVar[RateLimit | None] = None
    #: Paths (``"data.account_id"``, ``"metadata.key"``, or a tuple of them) whose values
    #: split the limits: each distinct value gets its own.
    partition_by: ClassVar[str | tuple[str, ...] | None] = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        try:
            check_max_attempts(cls.max_attempts)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{cls.__qualname__}.max_attempts: {exc}") from None
        if cls.max_concurrency is not None and (
            not isinstance(cls.max_concurrency, int) or cls.max_concurrency < 1
        ):
            raise ConfigurationError(
                f"{cls.__qualname__}.max_concurrency must be a positive int or None, "
                f"got {cls.max_concurrency!r}."
            )
        limits_from(
            cls.global_concurrency,
            cls.rate_limit,
            cls.partition_by,
            where=lambda key: f"{cls.__qualname__}.{key}",
        )
        if "execute" not in {n for c in cls.__mro__[:-1] if c is not Executor for n in vars(c)}:
            raise ConfigurationError(f"{cls.__qualname__} must define execute(self, job).")
        registry.register(cls)

    # -- hooks ---------------------------------------------------------------------------
    def execute(self, job: Job) -> Outcome | None:
        raise NotImplementedError

    def backoff(self, job: Job) -> timedelta:
        """The delay before retrying after attempt ``job.attempt`` failed."""
        return self.backoff_strategy.backoff(job.attempt)

    def timeout(self, job: Job) -> timedelta | None:
        """The time limit of one attempt (``None``: no limit)."""
        return None

    # -- enqueueing ----------------------------------------------------------------------
    @classmethod
    def builder(cls) -> JobBuilder:
        return JobBuilder(cls)

    @classmethod
    def enqueue(
        cls,
        data: Any = None,
        *,
        backend: Backend | None = None,
        using: str | None = None,
        **options: Any,
    ) -> JobId:
        """Shortcut for ``builder().with_data(data)…enqueue()``; options: ``metadata``,
        ``tags``, ``priority``, ``max_attempts``, ``schedule_at``, ``schedule_in``,
        ``unique``."""
        return enqueue_options(cls, {"data": data, **options}, backend, using)

    @classmethod
    async def aenqueue(
        cls,
        data: Any = None,
        *,
        backend: Backend | None = None,
        using: str | None = None,
        **options: Any,
    ) -> JobId:
        builder = cls.builder().apply({"data": data, **options})
        return await builder.aenqueue(backend=backend, using=using)

    @classmethod
    def enqueue_many(
        cls,
        items: Iterable[JobBuilder | dict[str, Any]],
        *,
        backend: Backend | None = None,
        using: str | None = None,
    ) -> list[JobId]:
        """Insert many jobs in few statements; returns their ids in order. Each item is a
        builder of this executor or a dict of builder options."""
        from . import signals

        jobs = jobs_from_items(cls, items)
        target = resolve_backend(backend, using)
        ids = enqueue_through(jobs, target.enqueue_many)
        if signals.job_enqueued.receivers:
            for job_id, job in zip(ids, jobs, strict=True):
                signals.job_enqueued.send(sender=cls, job_id=job_id, job=job)
        return ids

    @classmethod
    async def aenqueue_many(
        cls,
        items: Iterable[JobBuilder | dict[str, Any]],
        *,
        backend: Backend | None = None,
        using: str | None = None,
    ) -> list[JobId]:
        return await sync_to_async(cls.enqueue_many)(list(items), backend=backend, using=using)

    @classmethod
    def _as_builder(cls, item: JobBuilder | dict[str, Any], index: int) -> JobBuilder:
        if isinstance(item, JobBuilder):
            if item.executor is not cls:
                raise TypeError(
                    f"enqueue_many item {index} is a builder of {item.executor.__qualname__}, "
                    f"not of {cls.__qualname__}."
                )
            return item
        if isinstance(item, dict):
            return cls.builder().apply(item)
        raise TypeError(f"enqueue_many item {index} must be a JobBuilder or a dict, got {item!r}.")

    # -- managing jobs of this executor ------------------------------------------------------
    @classmethod
    def cancel_job(cls, job_id: int, reason: str = "", *, backend: Backend | None = None) -> Job:
        return resolve_backend(backend).cancel_job(job_id, reason, executor=cls.name)

    @classmethod
    async def acancel_job(
        cls, job_id: int, reason: str = "", *, backend: Backend | None = None
    ) -> Job:
        return await resolve_backend(backend).acancel_job(job_id, reason, executor=cls.name)

    @classmethod
    def rerun_job(cls, job_id: int, *, backend: Backend | None = None) -> Job:
        return resolve_backend(backend).rerun_job(job_id, executor=cls.name)

    @classmethod
    async def arerun_job(cls, job_id: int, *, backend: Backend | None = None) -> Job:
        return await resolve_backend(backend).arerun_job(job_id, executor=cls.name)

    @classmethod
    def query_jobs(
        cls,
        where: Query | None = None,
        *,
        limit: int | None = QUERY_LIMIT,
        after_id: int | None = None,
        tracebacks: bool = False,
        backend: Backend | None = None,
    ) -> list[Job]:
        """This executor's jobs matching ``where``, by id: at most ``limit`` of them (1,000 by
        default; ``None`` for all), after ``after_id`` to read the next page. Their errors
        come without traceback texts unless ``tracebacks`` (``get_job`` always has them)."""
        return resolve_backend(backend).query(
            for_executor(where or Where.all(), cls.name),
            limit=limit,
            after_id=after_id,
            tracebacks=tracebacks,
        )

    @classmethod
    async def aquery_jobs(
        cls,
        where: Query | None = None,
        *,
        limit: int | None = QUERY_LIMIT,
        after_id: int | None = None,
        tracebacks: bool = False,
        backend: Backend | None = None,
    ) -> list[Job]:
        return await resolve_backend(backend).aquery(
            for_executor(where or Where.all(), cls.name),
            limit=limit,
            after_id=after_id,
            tracebacks=tracebacks,
        )

    @classmethod
    def get_job(cls, job_id: int, *, backend: Backend | None = None) -> Job:
        return resolve_backend(backend).get_job(job_id, executor=cls.name)

    @classmethod
    async def aget_job(cls, job_id: int, *, backend: Backend | None = None) -> Job:
        return await resolve_backend(backend).aget_job(job_id, executor=cls.name)

    @classmethod
    def update_job(cls, job: Job, *, backend: Backend | None = None) -> Job:
        return resolve_backend(backend).update_job(job, executor=cls.name)

    @classmethod
    async def aupdate_job(cls, job: Job, *, backend: Backend | None = None) -> Job:
        return await resolve_backend(backend).aupdate_job(job, executor=cls.name)

    # -- flow control --------------------------------------------------------------------
    @classmethod
    def pause(cls, *, backend: Backend | None = None) -> None:
        """Pause this executor cluster-wide: running jobs finish, no worker claims its jobs
        from its next claim on, until ``resume()``. Stored, so it survives restarts."""
        resolve_backend(backend).pause_executors([cls.name])

    @classmethod
    async def apause(cls, *, backend: Backend | None = None) -> None:
        await resolve_backend(backend).apause_executors([cls.name])

    @classmethod
    def resume(cls, *, backend: Backend | None = None) -> None:
        resolve_backend(backend).resume_executors([cls.name])

    @classmethod
    async def aresume(cls, *, backend: Backend | None = None) -> None:
        await resolve_backend(backend).aresume_executors([cls.name])

    @classmethod
    def is_paused(cls, *, backend: Backend | None = None) -> bool:
        return cls.name in resolve_backend(backend).paused_executors()

    @classmethod
    async def ais_paused(cls, *, backend: Backend | None = None) -> bool:
        return cls.name in await resolve_backend(backend).apaused_executors()
