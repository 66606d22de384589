"""Conformance tests of enqueue's limits: a job whose JSON is larger than
``REXECUTOR["MAX_PAYLOAD_BYTES"]`` is refused with ``PayloadTooLarge`` and nothing is stored
(``enqueue_many``: none of its jobs). Mixed into ``BackendConformanceTests``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.test import override_settings

from ..backends.base import Backend
from ..exceptions import PayloadTooLarge
from ..query import Where
from ..uniqueness import Replace, UniquenessCriteria

if TYPE_CHECKING:
    from ..backends.base import EnqueuableJob

#: The limit these tests set: small, so exceeding it costs nothing.
LIMIT = 100
#: A string whose JSON text (with its two quotes) is exactly ``LIMIT`` bytes.
AT_LIMIT = "x" * (LIMIT - 2)
OVER_LIMIT = AT_LIMIT + "x"


class UniqConformance:
    """Mixin: uses the ``backend`` fixture and the ``job`` helper of the conformance suite."""

    job: Any

    @pytest.fixture
    def small_limit(self) -> Iterator[None]:
        with override_settings(REXECUTOR={"MAX_PAYLOAD_BYTES": LIMIT}):
            yield

    @staticmethod
    def _all_ids(backend: Backend) -> list[int]:
        return [job.id for job in backend.query(Where.all())]

    def test_a_payload_at_the_limit_is_stored(self, backend: Backend, small_limit: None) -> None:
        job_id = backend.enqueue(self.job(data=AT_LIMIT, metadata=AT_LIMIT, tags=[AT_LIMIT[2:]]))
        stored = backend.get_job(job_id)
        assert (stored.data, stored.metadata) == (AT_LIMIT, AT_LIMIT)

    @pytest.mark.parametrize("field", ["data", "metadata", "tags"])
    def test_a_payload_over_the_limit_is_refused_and_nothing_is_stored(
        self, backend: Backend, small_limit: None, field: str
    ) -> None:
        value: Any = [OVER_LIMIT[2:]] if field == "tags" else OVER_LIMIT
        big: EnqueuableJob = self.job(**{field: value})
        with pytest.raises(PayloadTooLarge, match=f"{field} is {LIMIT + 1} bytes") as info:
            backend.enqueue(big)
        assert (info.value.what, info.value.size, info.value.limit) == (field, LIMIT + 1, LIMIT)
        batches = [
            [self.job(data=1), self.job(data=2), big],
            [self.job(data=1, unique=UniquenessCriteria.by_key("ok")), big],
            [self.job(data=1), self.job(**{field: value}, unique=UniquenessCriteria.by_key(2))],
        ]
        for batch in batches:
            with pytest.raises(PayloadTooLarge):
                backend.enqueue_many(batch)
        with pytest.raises(PayloadTooLarge):
            backend.enqueue(self.job(**{field: value}, unique=UniquenessCriteria.by_key(3)))
        assert self._all_ids(backend) == []

    def test_a_replacing_enqueue_over_the_limit_leaves_the_matched_job_alone(
        self, backend: Backend, small_limit: None
    ) -> None:
        rule = UniquenessCriteria.by_key("replace")
        first = backend.enqueue(self.job(data="small", unique=rule))
        with pytest.raises(PayloadTooLarge):
            backend.enqueue(self.job(data=OVER_LIMIT, unique=rule.on_conflict(Replace.data())))
        assert backend.get_job(first).data == "small"
        assert self._all_ids(backend) == [first]

    def test_no_limit_when_the_setting_is_none(self, backend: Backend) -> None:
        with override_settings(REXECUTOR={"MAX_PAYLOAD_BYTES": None}):
            job_id = backend.enqueue(self.job(data="x" * (LIMIT * 10)))
        assert backend.get_job(job_id).data == "x" * (LIMIT * 10)
