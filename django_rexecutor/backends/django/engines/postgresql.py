"""The PostgreSQL engine: server-bound statements, ``COPY``, ``SKIP LOCKED`` claims, lock rows
for uniqueness, one-statement deletes, advisory locks for periodic work and LISTEN/NOTIFY
wake-ups."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from django.db import DatabaseError, OperationalError
from django.utils import timezone

from ....exceptions import UniquenessConflict
from ....models import JobErrorRecord, UniquenessLockRecord
from ....notifiers.base import Notifier
from ...values import EnqueuableJob, WorkflowStep
from .base import (
    INSERT_COLUMNS,
    JOB_TABLE,
    STEP_COLUMNS,
    Engine,
    encoded_row,
    encoded_step_row,
)

logger = logging.getLogger("django_rexecutor.backends")

INSERT_SQL = (
    f"INSERT INTO {JOB_TABLE} ({INSERT_COLUMNS})"
    " VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s, %s) RETURNING id"
)
RESERVE_IDS_SQL = (
    f"SELECT nextval(pg_get_serial_sequence('{JOB_TABLE}', 'id')) FROM generate_series(1, %s)"
)
COPY_SQL = f"COPY {JOB_TABLE} (id, {INSERT_COLUMNS}) FROM STDIN"
COPY_STEPS_SQL = f"COPY {JOB_TABLE} (id, {INSERT_COLUMNS}, {STEP_COLUMNS}) FROM STDIN"
_LOCK_TABLE = UniquenessLockRecord._meta.db_table
#: Take the lock row of a uniqueness slot (see ``UniquenessLockRecord``).
LOCK_SLOT_SQL = (
    f"INSERT INTO {_LOCK_TABLE} (slot, version) VALUES (%s, 1)"
    f" ON CONFLICT (slot) DO UPDATE SET version = {_LOCK_TABLE}.version + 1"
)
_ERROR_TABLE = JobErrorRecord._meta.db_table
_CONFLICT_MESSAGE = (
    "A concurrent enqueue for the same uniqueness rule committed after this transaction's "
    "snapshot was taken (isolation level REPEATABLE READ or SERIALIZABLE), so its job cannot "
    "be seen here and nothing was enqueued. Roll back and retry the whole transaction, or "
    "enqueue outside it (or in a READ COMMITTED one)."
)


class PostgresEngine(Engine):
    vendor = "postgresql"
    supports_notifications = True
    due_sql = "statement_timestamp()"
    attempted_at_sql = "statement_timestamp()"
    # Concurrent claimers never wait for, nor take, the same row; rows locked but not taken
    # stay ready and are unlocked when the statement commits.
    claim_lock_sql = " FOR UPDATE SKIP LOCKED"
    json_param_sql = "%s::jsonb"

    def hot_cursor(self) -> Any:
        # Quoting the parameters into the SQL in Python costs as much CPU as the statement's
        # round trip.
        return server_bound_cursor(self.connection)

    def insert(self, job: EnqueuableJob, limit: int | None) -> int:
        """One ``INSERT … RETURNING`` on the alias's connection (so it joins the caller's
        transaction), without a model instance: ``Model.save()`` costs more CPU than the
        database round trip itself."""
        row = encoded_row(job, timezone.now(), limit)
        with self.hot_cursor() as cursor:
            cursor.execute(INSERT_SQL, row)
            return int(cursor.fetchone()[0])

    def insert_many(self, jobs: Sequence[EnqueuableJob], limit: int | None) -> list[int]:
        """Bulk insert with ``COPY``: reserve the ids from the table's sequence in one query,
        then stream the rows with those ids, so they come back in order without ``RETURNING``
        (which ``COPY`` lacks). The insert trigger still fires once for the statement."""
        now = timezone.now()
        with self.atomic(), self.connection.cursor() as cursor:
            cursor.execute(RESERVE_IDS_SQL, [len(jobs)])
            ids = sorted(row[0] for row in cursor.fetchall())
            # Rows are encoded (and size-checked) while the COPY streams, so the database
            # works on the first rows while Python builds the next. A payload over the limit
            # raises mid-stream: the COPY is aborted and the atomic block rolls it back whole.
            with cursor.cursor.copy(COPY_SQL) as copy:
                for job_id, job in zip(ids, jobs, strict=True):
                    copy.write_row((job_id, *encoded_row(job, now, limit)))
        return ids

    def insert_steps(
        self, workflow_id: str, steps: Sequence[WorkflowStep], limit: int | None
    ) -> list[int]:
        """``insert_many``'s ``COPY`` with reserved ids, with the steps' workflow columns."""
        now = timezone.now()
        with self.atomic(), self.connection.cursor() as cursor:
            cursor.execute(RESERVE_IDS_SQL, [len(steps)])
            ids = sorted(row[0] for row in cursor.fetchall())
            with cursor.cursor.copy(COPY_STEPS_SQL) as copy:
                for job_id, step in zip(ids, steps, strict=True):
                    copy.write_row((job_id, *encoded_step_row(workflow_id, step, now, limit)))
        return ids

    @contextlib.contextmanager
    def unique_transaction(self) -> Iterator[None]:
        """A transaction in which unique enqueues see every job committed before their lock
        was granted.

        Under ``REPEATABLE READ`` and ``SERIALIZABLE`` a transaction reads the snapshot taken
        by its first statement, so an enqueue that waited for the lock could not see the job
        whose commit released it. A transaction of our own is therefore made
        ``READ COMMITTED``; inside the caller's transaction, the lock row's upsert fails with a
        serialization error in that case, which becomes ``UniquenessConflict``."""
        connection = self.connection
        own = not connection.in_atomic_block and connection.get_autocommit()
        try:
            with self.atomic():
                if own and _snapshot_per_transaction(connection):
                    with connection.cursor() as cursor:
                        cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                yield
        except OperationalError as exc:
            if _is_serialization_failure(exc):
                raise UniquenessConflict(_CONFLICT_MESSAGE) from exc
            raise

    def lock_slot(self, slot: int) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(LOCK_SLOT_SQL, [slot])

    def delete_jobs(self, ids: Sequence[int], where: str, params: Sequence[Any]) -> int:
        # One statement: the jobs' rows are locked and re-checked by the DELETE, and only the
        # errors of jobs it deleted go. One array parameter is much cheaper to send and plan
        # than thousands of IN items.
        with self.atomic(), self.connection.cursor() as cursor:
            cursor.execute(
                f"WITH gone AS (DELETE FROM {JOB_TABLE} WHERE {JOB_TABLE}.id = ANY(%s) AND {where}"
                f" RETURNING id), _ AS (DELETE FROM {_ERROR_TABLE} WHERE job_id IN"
                " (SELECT id FROM gone)) SELECT count(*) FROM gone",
                [list(ids), *params],
            )
            return int(cursor.fetchone()[0])

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """A session advisory lock, released by the server if the connection dies."""
        key = advisory_lock_key(name)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            row = cursor.fetchone()
        held = bool(row and row[0])
        try:
            yield held
        finally:
            if held:
                try:
                    with self.connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
                except DatabaseError:
                    # The connection is gone, and the session lock went with it.
                    logger.debug("Could not release the advisory lock %r", name, exc_info=True)

    def notifier(self) -> Notifier:
        """The alias's LISTEN connection (``notifiers.postgresql``), one per process."""
        from ....notifiers.postgresql import get_notifier

        return get_notifier(self.alias)

    def wait_for_jobs(self, executors: Collection[str], timeout: float) -> None:
        """Wait on LISTEN/NOTIFY up to ``timeout``."""
        self.notifier().wait(executors, timeout)

    def estimated_job_rows(self) -> int | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [JOB_TABLE]
            )
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] < 0:  # -1: never analyzed
            return None
        return int(row[0])

    def sampled_job_counts(self, percent: float) -> list[tuple[str, str, int]] | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT executor, status, count(*) FROM {JOB_TABLE} TABLESAMPLE SYSTEM (%s)"
                " GROUP BY executor, status",
                [percent],
            )
            return [(e, s, int(n)) for e, s, n in cursor.fetchall()]


def advisory_lock_key(name: str) -> int:
    """The advisory lock key of ``try_lock(name)``: a stable signed 64-bit int."""
    digest = hashlib.blake2b(f"django_rexecutor.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def server_bound_cursor(connection: Any) -> Any:
    """A cursor of a PostgreSQL ``connection`` that sends parameters separately from the SQL.

    Django's default cursor quotes every parameter into the SQL text in Python, which costs
    more CPU than a one-row insert itself. This one is opened and wrapped exactly as
    ``connection.cursor()`` does (error translation, query logging, execute wrappers), and
    prepares nothing, so it stays safe behind transaction-mode poolers."""
    from django.db.backends.postgresql import base

    factory = getattr(base, "ServerBindingCursor", None)
    if factory is None:  # psycopg2: no server-side binding
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(factory(connection.connection))


def _snapshot_per_transaction(connection: Any) -> bool:
    """Whether the connection's transactions read one snapshot throughout (``REPEATABLE READ``
    or ``SERIALIZABLE`` in the alias's ``OPTIONS``)."""
    from django.db.backends.postgresql.psycopg_any import IsolationLevel

    level = getattr(connection, "isolation_level", IsolationLevel.READ_COMMITTED)
    return level in (IsolationLevel.REPEATABLE_READ, IsolationLevel.SERIALIZABLE)


def _is_serialization_failure(exc: BaseException) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "40001" or getattr(cause, "pgcode", None) == "40001"
