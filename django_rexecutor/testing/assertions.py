"""``assert_enqueued`` and ``refute_enqueued``: did the code under test enqueue a job?

"Enqueued" means waiting to run: status ``scheduled`` or ``retryable`` (SPEC §12). A job that
already ran — or is running, or was cancelled — no longer counts, so a test that drains jobs
between two assertions sees the queue as a worker would. The filters are query-tree nodes, so
the helpers work on every backend (in-memory, the Django one, or a third-party one)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..backends import resolve_backend
from ..job import Job
from ..query import And, ExecutorEqual, Or, Query, StatusEqual, Where
from ..status import JobStatus

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..executor import Executor

_UNSET: Any = object()
#: Most jobs a failure message lists; enough to spot the mistake, short enough to read.
SHOWN = 20
#: Most jobs fetched to describe what exists (bounded even on a large database).
_FETCHED = 200

ENQUEUED: Query = Or((StatusEqual(JobStatus.SCHEDULED), StatusEqual(JobStatus.RETRYABLE)))


def assert_enqueued(
    executor: type[Executor] | str | None = None,
    *,
    data: Any = _UNSET,
    metadata: Any = _UNSET,
    tags: Iterable[str] | None = None,
    scheduled_at: datetime | None = None,
    scheduled_before: datetime | None = None,
    scheduled_after: datetime | None = None,
    count: int | None = None,
    backend: Backend | None = None,
) -> list[Job]:
    """Assert that waiting jobs match every given filter, and return them.

    ``executor`` is an ``Executor`` class or its name; ``data`` and ``metadata`` must be equal
    to the job's (exact JSON equality; ``None`` matches a job without data); ``tags`` must all
    be on the job; ``scheduled_at`` is exact, ``scheduled_before``/``scheduled_after`` strict.
    Without ``count`` at least one job must match; with ``count=N`` exactly ``N`` (``0``: none).
    ``backend`` defaults to the configured one (or the one installed by ``use_backend``).
    On failure the ``AssertionError`` lists the jobs that do exist."""
    __tracebackhide__ = True
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError(f"count must be None or an int >= 0, got {count!r}.")
    name = _executor_name(executor)
    query, described = _build(
        name, data, metadata, tags, scheduled_at, scheduled_before, scheduled_after
    )
    target = resolve_backend(backend)
    matched = target.query(query)
    if count is None and matched:
        return matched
    if count is not None and len(matched) == count:
        return matched
    wanted = "at least one enqueued job" if count is None else f"exactly {count} enqueued job(s)"
    raise AssertionError(
        f"Expected {wanted} matching {described}; found {len(matched)}.\n"
        + _existing(target, name, matched)
    )


def refute_enqueued(
    executor: type[Executor] | str | None = None,
    *,
    data: Any = _UNSET,
    metadata: Any = _UNSET,
    tags: Iterable[str] | None = None,
    scheduled_at: datetime | None = None,
    scheduled_before: datetime | None = None,
    scheduled_after: datetime | None = None,
    backend: Backend | None = None,
) -> None:
    """Assert that no waiting job matches the filters (same meaning as in
    ``assert_enqueued``)."""
    __tracebackhide__ = True
    name = _executor_name(executor)
    query, described = _build(
        name, data, metadata, tags, scheduled_at, scheduled_before, scheduled_after
    )
    target = resolve_backend(backend)
    matched = target.query(query, limit=_FETCHED)
    if matched:
        raise AssertionError(
            f"Expected no enqueued job matching {described}; found {len(matched)}"
            f"{'+' if len(matched) >= _FETCHED else ''}:\n" + _lines(matched)
        )


def _executor_name(executor: type[Executor] | str | None) -> str | None:
    if executor is None or isinstance(executor, str):
        return executor
    name = getattr(executor, "name", None)
    if isinstance(executor, type) and isinstance(name, str):
        return name
    raise TypeError(f"executor must be an Executor class or an executor name, got {executor!r}.")


def _build(
    executor: str | None,
    data: Any,
    metadata: Any,
    tags: Iterable[str] | None,
    scheduled_at: datetime | None,
    scheduled_before: datetime | None,
    scheduled_after: datetime | None,
) -> tuple[Query, str]:
    """The query for the filters, and the filters described for a failure message."""
    parts: list[Query] = [ENQUEUED]
    described: list[str] = []
    if executor is not None:
        parts.append(ExecutorEqual(executor))
        described.append(f"executor={executor!r}")
    if data is not _UNSET:
        parts.append(Where.data_equals(data))
        described.append(f"data={data!r}")
    if metadata is not _UNSET:
        parts.append(Where.metadata_equals(metadata))
        described.append(f"metadata={metadata!r}")
    if tags is not None:
        tag_list = list(tags) if not isinstance(tags, str) else tags
        parts.append(Where.tagged_by_all_of(tag_list))
        described.append(f"tags={tag_list!r}")
    for label, value, make in (
        ("scheduled_at", scheduled_at, Where.scheduled_at_equals),
        ("scheduled_before", scheduled_before, Where.scheduled_at_before),
        ("scheduled_after", scheduled_after, Where.scheduled_at_after),
    ):
        if value is not None:
            parts.append(make(value))
            described.append(f"{label}={value.isoformat()}")
    return And(tuple(parts)), ", ".join(described) or "any filter"


def _existing(backend: Backend, executor: str | None, matched: list[Job]) -> str:
    """What exists instead: the executor's jobs in every status (or every job if it has none),
    so a job that already ran or went to another executor is easy to spot."""
    if matched:
        return "Matching jobs:\n" + _lines(matched)
    scope: Query = And(())
    heading = "Jobs that exist"
    if executor is not None:
        jobs = backend.query(ExecutorEqual(executor), limit=_FETCHED)
        if jobs:
            return f"Jobs of executor {executor!r} that exist:\n" + _lines(jobs)
        heading = f"No job of executor {executor!r} exists. Jobs of other executors"
    jobs = backend.query(scope, limit=_FETCHED)
    if not jobs:
        return "No job exists at all."
    return f"{heading}:\n" + _lines(jobs)


def _lines(jobs: list[Job]) -> str:
    shown = [
        f"  #{job.id} {job.executor} [{job.status.value}] data={job.data!r}"
        f" metadata={job.metadata!r} tags={job.tags!r}"
        f" scheduled_at={job.scheduled_at.isoformat()}"
        for job in jobs[:SHOWN]
    ]
    if len(jobs) > SHOWN:
        more = f"{len(jobs) - SHOWN}{'+' if len(jobs) >= _FETCHED else ''}"
        shown.append(f"  ... and {more} more")
    return "\n".join(shown)
