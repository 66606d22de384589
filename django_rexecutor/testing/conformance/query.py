"""``QueryConformance``: ``query`` and ``get_job`` — every query node (ids, executors, tags,
exact data/metadata, ``scheduled_at``, statuses), ``And``/``Or``/``Not`` precedence and their
empty forms, paging with ``after_id`` and queries without tracebacks."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ...backends.base import Backend, Claim, ErrorDetails
from ...job import JobId
from ...query import (
    And,
    DataEquals,
    ExecutorEqual,
    IdEquals,
    IdIn,
    MetadataEquals,
    Not,
    Or,
    Query,
    ScheduledAtAfter,
    ScheduledAtBefore,
    ScheduledAtEqual,
    StatusEqual,
    TagsAllOf,
    TagsOneOf,
)
from ...status import JobStatus
from .base import ALPHA, BETA, MISSING_ID, ConformanceBase


class QueryConformance(ConformanceBase):
    """Queries; adoptable alone with ``ConformanceBase``."""

    def test_query_by_id_and_executor(self, backend: Backend) -> None:
        a1 = self.enqueue(backend, ALPHA)
        b1 = self.enqueue(backend, BETA)
        a2 = self.enqueue(backend, ALPHA)
        assert self.ids(backend.query(IdEquals(a1))) == [a1]
        assert self.ids(backend.query(ExecutorEqual(ALPHA))) == [a1, a2]
        assert self.ids(backend.query(IdEquals(b1) & ExecutorEqual(BETA))) == [b1]
        assert backend.query(IdEquals(b1) & ExecutorEqual(ALPHA)) == []
        assert backend.query(IdEquals(MISSING_ID)) == []
        assert self.ids(backend.query(ExecutorEqual(ALPHA), limit=1)) == [a1]

    def test_id_in_with_several_ids(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, data={"n": n}) for n in range(4)]
        assert self.ids(backend.query(IdIn((ids[3], ids[0], ids[2])))) == [ids[0], ids[2], ids[3]]
        assert self.ids(backend.query(IdIn((ids[1], MISSING_ID)))) == [ids[1]]
        assert backend.query(IdIn(())) == []
        assert self.ids(backend.query(Not(IdIn((ids[0], ids[1]))))) == ids[2:]

    def test_nested_and_or_not_keep_their_precedence(self, backend: Backend) -> None:
        a_tagged = self.enqueue(backend, ALPHA, tags=["t"])
        a_plain = self.enqueue(backend, ALPHA)
        b_tagged = self.enqueue(backend, BETA, tags=["t"])
        b_plain = self.enqueue(backend, BETA)
        tagged = TagsOneOf(("t",))

        def found(query: Query) -> set[int]:
            return {j.id for j in backend.query(query)}

        # (a_tagged OR a_plain) AND beta: flattening to "x OR y AND z" would return a_tagged.
        assert found(Or((IdEquals(a_tagged), IdEquals(a_plain))) & ExecutorEqual(BETA)) == set()
        # NOT (alpha AND tagged): "NOT a AND b" would lose a_plain and b_plain.
        assert found(Not(ExecutorEqual(ALPHA) & tagged)) == {a_plain, b_tagged, b_plain}
        # (alpha AND NOT tagged) OR (beta AND tagged)
        query = (ExecutorEqual(ALPHA) & ~tagged) | (ExecutorEqual(BETA) & tagged)
        assert found(query) == {a_plain, b_tagged}
        assert found(~query) == {a_tagged, b_plain}
        # Three levels deep.
        deep = Not(Or((And((ExecutorEqual(BETA), Not(tagged))), IdEquals(a_tagged))))
        assert found(deep) == {a_plain, b_tagged}

    def test_empty_and_matches_all_and_empty_or_matches_none(self, backend: Backend) -> None:
        ids = {self.enqueue(backend, ALPHA), self.enqueue(backend, BETA)}
        assert {j.id for j in backend.query(And(()))} == ids
        assert backend.query(Or(())) == []
        assert backend.query(Not(And(()))) == []
        assert {j.id for j in backend.query(Not(Or(())))} == ids
        assert {j.id for j in backend.query(Or((Or(()), And(()))))} == ids

    def test_tags_all_of_and_one_of(self, backend: Backend) -> None:
        ab = self.enqueue(backend, tags=["a", "b"])
        bc = self.enqueue(backend, tags=["b", "c"])
        untagged = self.enqueue(backend)

        def found(query: Query) -> list[int]:
            return self.ids(backend.query(query))

        assert found(TagsAllOf(("a", "b"))) == [ab]
        assert found(TagsAllOf(("b",))) == [ab, bc]
        assert found(TagsAllOf(("a", "c"))) == []
        assert found(TagsAllOf(())) == [ab, bc, untagged]
        assert found(TagsOneOf(("a", "c"))) == [ab, bc]
        assert found(TagsOneOf(("z",))) == []
        assert found(TagsOneOf(())) == []
        assert found(Not(TagsOneOf(("a",)))) == [bc, untagged]

    def test_data_and_metadata_are_exact_equality(self, backend: Backend) -> None:
        full = self.enqueue(backend, data={"a": 1, "b": [1, 2], "c": {"y": 1, "x": 2}})
        part = self.enqueue(backend, data={"a": 1})
        none = self.enqueue(backend, data=None, metadata={"k": "v"})
        listed = self.enqueue(backend, data=[2, 1], metadata=None)
        scalar = self.enqueue(backend, data="text", metadata={"k": "v", "extra": 1})

        def found(query: Query) -> list[int]:
            return self.ids(backend.query(query))

        assert found(DataEquals({"c": {"x": 2, "y": 1}, "b": [1, 2], "a": 1})) == [full]
        assert found(DataEquals({"a": 1})) == [part], "no containment match"
        assert found(DataEquals({"a": 1, "b": [2, 1], "c": {"x": 2, "y": 1}})) == []
        assert found(DataEquals(None)) == [none]
        assert found(DataEquals([2, 1])) == [listed]
        assert found(DataEquals([1, 2])) == []
        assert found(DataEquals("text")) == [scalar]
        assert found(MetadataEquals({"k": "v"})) == [none]
        assert found(MetadataEquals(None)) == [full, part, listed]
        assert found(Not(DataEquals(None)) & MetadataEquals(None)) == [full, part, listed]

    def test_scheduled_at_before_after_and_equal(self, backend: Backend) -> None:
        at = timezone.now().replace(microsecond=123456) + timedelta(hours=1)
        early = self.enqueue(backend, scheduled_at=at - timedelta(microseconds=1))
        exact = self.enqueue(backend, scheduled_at=at)
        late = self.enqueue(backend, scheduled_at=at + timedelta(minutes=1))
        assert self.ids(backend.query(ScheduledAtBefore(at))) == [early]
        assert self.ids(backend.query(ScheduledAtAfter(at))) == [late]
        assert self.ids(backend.query(ScheduledAtEqual(at))) == [exact]
        assert self.ids(backend.query(Not(ScheduledAtEqual(at)))) == [early, late]

    def test_query_by_status_returns_errors_oldest_first(self, backend: Backend) -> None:
        job_id = self.enqueue(backend)
        self.fail_once(backend, job_id)
        self.fail_once(backend, job_id)
        self.enqueue(backend)
        [job] = backend.query(StatusEqual(JobStatus.RETRYABLE))
        assert job.id == job_id
        assert [e.attempt for e in job.errors] == [1, 2]
        assert job.errors[0].recorded_at <= job.errors[1].recorded_at
        assert len(backend.query(StatusEqual(JobStatus.SCHEDULED))) == 1

    def test_query_pages_by_id_with_after_id(self, backend: Backend) -> None:
        ids = [self.enqueue(backend, ALPHA, data={"n": n}) for n in range(7)]
        self.enqueue(backend, BETA)
        pages: list[list[int]] = []
        after: int | None = None
        while True:
            page = backend.query(ExecutorEqual(ALPHA), limit=3, after_id=after)
            if not page:
                break
            pages.append([j.id for j in page])
            after = page[-1].id
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]
        assert [j.id for j in backend.query(ExecutorEqual(ALPHA), after_id=ids[4])] == ids[5:]

    def test_query_without_tracebacks_keeps_the_rest_of_each_error(self, backend: Backend) -> None:
        job_id: JobId = self.enqueue(backend, ALPHA, max_attempts=1)
        job = self.claim(backend, ALPHA)
        error = ErrorDetails("payment_declined", "card refused", "Traceback: line 1")
        assert backend.mark_job_discarded(job_id, error, claim=Claim.of(job))
        [full] = backend.query(StatusEqual(JobStatus.DISCARDED))
        [light] = backend.query(StatusEqual(JobStatus.DISCARDED), tracebacks=False)
        assert [e.traceback for e in full.errors] == ["Traceback: line 1"]
        assert [(e.attempt, e.error_type, e.message, e.traceback) for e in light.errors] == [
            (1, "payment_declined", "card refused", "")
        ]
        assert light.errors[0].recorded_at == full.errors[0].recorded_at
