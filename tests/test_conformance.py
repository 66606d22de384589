"""Our two backends pass the shipped conformance suite: the in-memory one, and the Django one on
whichever database this run uses (SQLite, or PostgreSQL with ``DATABASE_URL``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from django_rexecutor import InMemoryBackend
from django_rexecutor.backends.base import Backend
from django_rexecutor.backends.orm import DjangoBackend
from django_rexecutor.models import JobRecord
from django_rexecutor.testing import BackendConformanceTests, conformance
from django_rexecutor.testing.conformance import ConformanceBase


class TestInMemoryBackend(BackendConformanceTests):
    # Its wait_for_jobs is woken by a condition variable on every enqueue.
    enqueue_wakes_waiters = True

    def make_backend(self) -> Backend:
        return InMemoryBackend()

    def delete_behind_the_backend(self, backend: Backend, job_id: int) -> None:
        assert isinstance(backend, InMemoryBackend)
        del backend._jobs[job_id]


# Committed rows, because the suite claims and subscribes from other threads (each with its own
# connection). `available_apps` limits the flush between tests to our tables and skips
# re-creating permissions, which is most of a transactional test's cost on PostgreSQL.
@pytest.mark.django_db(transaction=True, available_apps=["django_rexecutor"])
class TestDjangoBackend(BackendConformanceTests):
    def make_backend(self) -> Backend:
        return DjangoBackend()

    def delete_behind_the_backend(self, backend: Backend, job_id: int) -> None:
        JobRecord.objects.filter(pk=job_id).delete()

    @property
    def try_lock_excludes(self) -> bool:  # type: ignore[override]
        """SQLite runs one writer at a time, so every caller holds its locks (the work they
        guard is fenced); PostgreSQL's are advisory locks, one holder at a time."""
        return connection.vendor == "postgresql"

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _stop_listener(cls) -> Iterator[None]:
        """On PostgreSQL the wake-up and notifier tests start the process-wide LISTEN
        connection; close it afterwards, or the test database cannot be dropped at the end of
        the run."""
        yield
        from django_rexecutor.notifiers.postgresql import stop_notifiers

        stop_notifiers()


def test_each_part_of_the_suite_can_be_adopted_alone() -> None:
    """A backend that implements part of the contract runs the matching mixins on their own;
    together they are the whole suite."""
    parts = [getattr(conformance, n) for n in conformance.__all__ if n.endswith("Conformance")]
    assert set(BackendConformanceTests.__bases__) == set(parts)
    for part in parts:
        assert issubclass(part, ConformanceBase) and part.__bases__ == (ConformanceBase,)
        assert any(name.startswith("test_") for name in vars(part)), part

    class OnlyQueries(conformance.QueryConformance):
        def make_backend(self) -> Backend:
            return InMemoryBackend()

    suite = OnlyQueries()
    suite.test_id_in_with_several_ids(suite.make_backend())
