"""Query trees for looking up jobs.

The node classes mirror rexecutor's backend ``Query`` enum one for one; backends compile them
(see ``backends.compiler``) or evaluate them (``Query.matches``, used by the in-memory backend).
``Where`` is the user-facing way to build them; nodes combine with ``&``, ``|`` and ``~``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .backoff import to_timedelta
from .encoding import canonical_json, to_json_native
from .status import JobStatus

if TYPE_CHECKING:
    from .job import Job


class Query:
    """Base of every query node."""

    def __and__(self, other: Query) -> Query:
        return And((self, _check(other)))

    def __or__(self, other: Query) -> Query:
        return Or((self, _check(other)))

    def __invert__(self) -> Query:
        return Not(self)

    def matches(self, job: Job) -> bool:  # pragma: no cover - every node overrides it
        raise NotImplementedError


def _check(value: object) -> Query:
    if not isinstance(value, Query):
        raise TypeError(f"Cannot combine a query with {value!r}; build it with Where.")
    return value


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} needs a datetime, got {value!r}.")
    if timezone.is_naive(value):
        raise ValueError(f"{name} got the naive datetime {value!r}; pass an aware datetime.")
    return value


@dataclass(frozen=True)
class Not(Query):
    query: Query

    def matches(self, job: Job) -> bool:
        return not self.query.matches(job)


@dataclass(frozen=True)
class And(Query):
    """All of ``queries``; an empty ``And`` matches every job."""

    queries: tuple[Query, ...]

    def matches(self, job: Job) -> bool:
        return all(q.matches(job) for q in self.queries)


@dataclass(frozen=True)
class Or(Query):
    """Any of ``queries``; an empty ``Or`` matches no job."""

    queries: tuple[Query, ...]

    def matches(self, job: Job) -> bool:
        return any(q.matches(job) for q in self.queries)


@dataclass(frozen=True)
class ExecutorEqual(Query):
    executor: str

    def matches(self, job: Job) -> bool:
        return job.executor == self.executor


@dataclass(frozen=True)
class DataEquals(Query):
    data: Any

    def matches(self, job: Job) -> bool:
        return canonical_json(job.data) == canonical_json(self.data)


@dataclass(frozen=True)
class MetadataEquals(Query):
    metadata: Any

    def matches(self, job: Job) -> bool:
        return canonical_json(job.metadata) == canonical_json(self.metadata)


@dataclass(frozen=True)
class IdEquals(Query):
    id: int

    def matches(self, job: Job) -> bool:
        return job.id == self.id


@dataclass(frozen=True)
class IdIn(Query):
    ids: tuple[int, ...]

    def matches(self, job: Job) -> bool:
        return job.id in self.ids


@dataclass(frozen=True)
class StatusEqual(Query):
    status: JobStatus

    def matches(self, job: Job) -> bool:
        return job.status == self.status


@dataclass(frozen=True)
class TagsAllOf(Query):
    """Jobs carrying every one of ``tags`` (and possibly more)."""

    tags: tuple[str, ...]

    def matches(self, job: Job) -> bool:
        return set(self.tags) <= set(job.tags)


@dataclass(frozen=True)
class TagsOneOf(Query):
    """Jobs carrying at least one of ``tags``."""

    tags: tuple[str, ...]

    def matches(self, job: Job) -> bool:
        return bool(set(self.tags) & set(job.tags))


@dataclass(frozen=True)
class ScheduledAtBefore(Query):
    at: datetime

    def matches(self, job: Job) -> bool:
        return job.scheduled_at < self.at


@dataclass(frozen=True)
class ScheduledAtAfter(Query):
    at: datetime

    def matches(self, job: Job) -> bool:
        return job.scheduled_at > self.at


@dataclass(frozen=True)
class ScheduledAtEqual(Query):
    at: datetime

    def matches(self, job: Job) -> bool:
        return job.scheduled_at == self.at


def _tags(tags: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise TypeError(f"{name} takes a list of tags, not the string {tags!r}.")
    out = tuple(tags)
    for tag in out:
        if not isinstance(tag, str):
            raise TypeError(f"{name}: tag {tag!r} is not a string.")
    return out


@dataclass(frozen=True)
class WorkflowEqual(Query):
    """The steps of one workflow (``Workflow.enqueue().workflow_id``)."""

    workflow_id: str

    def matches(self, job: Job) -> bool:
        return job.workflow_id == self.workflow_id


def _ids(ids: Iterable[int]) -> tuple[int, ...]:
    out = tuple(ids)
    for job_id in out:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"Where.id_in: {job_id!r} is not a job id (an int).")
    return out


class Where:
    """Constructors for job queries, e.g.
    ``Where.status_equals("retryable") & ~Where.tagged_by_one_of(["slow"])``."""

    @staticmethod
    def data_equals(data: Any) -> Query:
        return DataEquals(to_json_native(data, what="Where.data_equals value"))

    @staticmethod
    def metadata_equals(metadata: Any) -> Query:
        return MetadataEquals(to_json_native(metadata, what="Where.metadata_equals value"))

    @staticmethod
    def id_equals(job_id: int) -> Query:
        return IdEquals(_ids([job_id])[0])

    @staticmethod
    def id_in(ids: Iterable[int]) -> Query:
        return IdIn(_ids(ids))

    @staticmethod
    def status_equals(status: JobStatus | str) -> Query:
        return StatusEqual(JobStatus.parse(status))

    @staticmethod
    def tagged_by_all_of(tags: Iterable[str]) -> Query:
        return TagsAllOf(_tags(tags, "Where.tagged_by_all_of"))

    @staticmethod
    def tagged_by_one_of(tags: Iterable[str]) -> Query:
        return TagsOneOf(_tags(tags, "Where.tagged_by_one_of"))

    @staticmethod
    def scheduled_at_before(at: datetime) -> Query:
        return ScheduledAtBefore(_aware(at, "Where.scheduled_at_before"))

    @staticmethod
    def scheduled_at_after(at: datetime) -> Query:
        return ScheduledAtAfter(_aware(at, "Where.scheduled_at_after"))

    @staticmethod
    def scheduled_at_equals(at: datetime) -> Query:
        return ScheduledAtEqual(_aware(at, "Where.scheduled_at_equals"))

    @staticmethod
    def scheduled_at_older_than(age: timedelta | float) -> Query:
        """Jobs scheduled more than ``age`` ago."""
        delta = to_timedelta(age, name="Where.scheduled_at_older_than")
        return ScheduledAtBefore(timezone.now() - delta)

    @staticmethod
    def scheduled_at_within_the_last(age: timedelta | float) -> Query:
        """Jobs scheduled after now - ``age`` (future jobs included, as in rexecutor)."""
        delta = to_timedelta(age, name="Where.scheduled_at_within_the_last")
        return ScheduledAtAfter(timezone.now() - delta)

    @staticmethod
    def all() -> Query:
        return And(())

    @staticmethod
    def workflow_equals(workflow_id: str) -> Query:
        """The steps of the workflow ``workflow_id``."""
        if not isinstance(workflow_id, str) or not workflow_id:
            raise TypeError(f"Where.workflow_equals: {workflow_id!r} is not a workflow id.")
        return WorkflowEqual(workflow_id)


def for_executor(query: Query, executor: str) -> Query:
    """Restrict ``query`` to one executor's jobs (the class-level API's guard)."""
    return And((ExecutorEqual(executor), query))
