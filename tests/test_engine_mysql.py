"""The MariaDB/MySQL engine's own paths that the shared suite does not choose between: MySQL's
bulk insert without ``RETURNING`` (consecutive ids, or row by row when the server does not
promise them), and the idle claim that sends one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_rexecutor import DjangoBackend
from django_rexecutor.backends.django.engines import mysql
from django_rexecutor.backends.values import EnqueuableJob
from django_rexecutor.models import JobRecord

pytestmark = [
    pytest.mark.skipif(connection.vendor != "mysql", reason="needs MariaDB/MySQL"),
    pytest.mark.django_db,
]


def jobs(count: int) -> list[EnqueuableJob]:
    return [
        EnqueuableJob(
            executor="tests.engine_mysql",
            data={"i": i},
            metadata=None,
            max_attempts=1,
            scheduled_at=timezone.now(),
            tags=("t",) if i % 2 else (),
            priority=0,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("consecutive", [True, False], ids=["consecutive-ids", "row-by-row"])
def test_mysqls_bulk_insert_returns_the_ids_of_its_rows_in_order(
    monkeypatch: pytest.MonkeyPatch, consecutive: bool
) -> None:
    # As on MySQL: no INSERT … RETURNING; the server's id promise decides the path.
    monkeypatch.setattr(connection, "mysql_is_mariadb", False)
    monkeypatch.setattr(mysql, "_consecutive_ids", lambda cursor: consecutive)
    monkeypatch.setattr(mysql, "INSERT_CHUNK", 7)  # several statements
    engine = DjangoBackend().engine
    ids = engine.insert_many(jobs(20), None)
    stored = dict(JobRecord.objects.filter(pk__in=ids).values_list("pk", "data"))
    assert [stored[i] for i in ids] == [{"i": i} for i in range(20)]


def test_the_server_here_promises_consecutive_ids() -> None:
    with connection.cursor() as cursor:
        assert mysql._consecutive_ids(cursor)


@pytest.mark.django_db(transaction=True)
def test_an_idle_claim_is_one_statement_and_a_busy_one_a_short_transaction() -> None:
    backend = DjangoBackend()
    backend.claim_jobs("w", {"tests.engine_mysql": 5}, 5)  # connects
    with CaptureQueriesContext(connection) as queries:
        assert backend.claim_jobs("w", {"tests.engine_mysql": 5}, 5) == []
    assert len(queries) == 1 and "SKIP LOCKED" in queries[0]["sql"]
    backend.enqueue_many(jobs(3))
    with CaptureQueriesContext(connection) as queries:
        assert len(backend.claim_jobs("w", {"tests.engine_mysql": 5}, 5)) == 3
    statements = [q["sql"].split()[0].upper() for q in queries]
    assert statements[:6] == ["SELECT", "START", "SELECT", "UPDATE", "SELECT", "COMMIT"]
