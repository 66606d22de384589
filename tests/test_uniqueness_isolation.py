"""Uniqueness holds under every isolation level: simultaneous enqueues of one key leave exactly
one job, whether each enqueue runs in a transaction of its own or inside the caller's
``REPEATABLE READ`` or ``SERIALIZABLE`` one (there an enqueue that could not see a concurrent
job raises ``UniquenessConflict`` and the caller retries)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection, connections, transaction

from django_rexecutor import Executor, Job, JobId, UniquenessCriteria
from django_rexecutor.exceptions import RexecutorError, UniquenessConflict
from django_rexecutor.models import JobRecord
from tests.concurrency import hammer

#: ER_LOCK_DEADLOCK
INNODB_DEADLOCK = 1213
RULE = UniquenessCriteria.by_key({"invoice": 9}).and_executor()


class Invoice(Executor):
    name = "tests.uniqueness_isolation.invoice"

    def execute(self, job: Job) -> None:
        return None


def _stored() -> list[int]:
    return list(JobRecord.objects.filter(executor=Invoice.name).values_list("pk", flat=True))


@pytest.fixture(params=["read committed", "repeatable read", "serializable"])
def isolation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every new connection of the default alias uses that isolation level."""
    level: Any = request.param  # MariaDB/MySQL: Django takes the level's name
    if connection.vendor == "postgresql":
        from psycopg import IsolationLevel

        level = IsolationLevel[request.param.upper().replace(" ", "_")]
    saved = dict(connection.settings_dict["OPTIONS"])
    options = [connections.settings["default"]["OPTIONS"], connection.settings_dict["OPTIONS"]]
    connection.close()
    for dict_ in options:
        dict_["isolation_level"] = level
    yield request.param
    connection.close()
    for dict_ in options:
        dict_.pop("isolation_level", None)
        if "isolation_level" in saved:
            dict_["isolation_level"] = saved["isolation_level"]


def _assert_one_job(results: list[JobId]) -> None:
    stored = _stored()
    assert len(stored) == 1, f"{len(stored)} jobs for one key"
    assert {int(r) for r in results} == set(stored)
    assert sum(r.inserted for r in results) == 1


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_simultaneous_unique_enqueues_leave_one_job_under_every_isolation_level(
    isolation: str,
) -> None:
    results = hammer(8, 10, lambda: Invoice.enqueue(unique=RULE))
    assert len(results) == 80
    _assert_one_job(results)


def _enqueue_in_a_retried_transaction() -> JobId:
    """What a caller under REPEATABLE READ/SERIALIZABLE does: retry the whole transaction
    (on InnoDB also when its own read was a deadlock's victim, as any InnoDB caller must)."""
    for _ in range(50):
        try:
            with transaction.atomic():
                JobRecord.objects.filter(executor=Invoice.name).count()  # takes the snapshot
                return Invoice.enqueue(unique=RULE)
        except UniquenessConflict:
            continue
        except OperationalError as exc:
            if connection.vendor == "mysql" and exc.args[0] == INNODB_DEADLOCK:
                continue
            raise
    raise AssertionError("no attempt succeeded")


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_simultaneous_unique_enqueues_inside_callers_transactions_leave_one_job(
    isolation: str,
) -> None:
    results = hammer(6, 5, _enqueue_in_a_retried_transaction)
    assert len(results) == 30
    _assert_one_job(results)


def _enqueue_in_another_connection() -> JobId:
    result: list[JobId] = []

    def work() -> None:
        try:
            result.append(Invoice.enqueue(unique=RULE))
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return result[0]


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_an_enqueue_that_cannot_see_a_committed_duplicate_raises_a_clear_error(
    isolation: str,
) -> None:
    if connection.vendor == "mysql" and isolation == "serializable":
        pytest.skip(
            "InnoDB's SERIALIZABLE locks what this transaction read: the other enqueue waits"
            " for it instead of committing a job it cannot see (so this case cannot arise)"
        )
    with transaction.atomic():
        assert _stored() == []  # this transaction's snapshot is taken here
        other = _enqueue_in_another_connection()  # commits a job this snapshot cannot see
        if isolation == "read committed":
            again = Invoice.enqueue(unique=RULE)
            assert (again, again.inserted) == (other, False)
        else:
            with pytest.raises(UniquenessConflict, match="retry the whole transaction") as info:
                Invoice.enqueue(unique=RULE)
            assert isinstance(info.value, RexecutorError)
    assert _stored() == [other]


CHILD = """
import json, sys
import django
django.setup()
from django_rexecutor import Executor, UniquenessCriteria

class Invoice(Executor):
    name = "tests.uniqueness_isolation.invoice"
    def execute(self, job):
        return None

rule = UniquenessCriteria.by_key({"invoice": 9}).and_executor()
sys.stdin.readline()  # every process starts enqueueing at the same moment
print(json.dumps([[int(i), i.inserted] for i in (Invoice.enqueue(unique=rule) for _ in range(10))]))
"""


@pytest.mark.django_db(transaction=True)
def test_simultaneous_unique_enqueues_from_several_processes_leave_one_job(
    subprocess_env: dict[str, str],
) -> None:
    """Processes, not threads: on SQLite each has its own file handle and lock."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD],
            env=subprocess_env,
            cwd=Path(__file__).resolve().parent.parent / "testproject",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    # Django's start-up dominates; the enqueues themselves start together on the newline.
    outputs = [child.communicate("\n", timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children)
    results = [JobId(i, inserted=ins) for out in outputs for i, ins in json.loads(out)]
    assert len(results) == 40
    _assert_one_job(results)
