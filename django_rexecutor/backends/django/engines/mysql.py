"""The MariaDB and MySQL engine (Django's ``mysql`` vendor; MariaDB ≥ 10.6, MySQL ≥ 8.0, InnoDB).

Neither database has ``UPDATE … RETURNING``, so the claim and the batched completion each run
one short transaction: a locking ``SELECT`` of the rows (``SKIP LOCKED`` for the claim, as on
PostgreSQL), an ``UPDATE`` of exactly those ids, and, for the claim, a read of the rows it
took. Uniqueness rules meet at lock rows (``INSERT … ON DUPLICATE KEY UPDATE``), periodic
work leads with ``GET_LOCK``, and there are no notifications between processes: workers poll
(``default_poll_interval``), and the process-local notifier wakes them for jobs enqueued in
their own process.

Every timestamp is UTC, as Django stores datetimes there: the raw statements use
``UTC_TIMESTAMP(6)``; the ORM's ``Now()`` reads the session's time zone, which the system
check ``django_rexecutor.E053`` requires to be UTC."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, OperationalError
from django.utils import timezone

from ....exceptions import EncodeDecodeError, UniquenessConflict
from ....models import JobErrorRecord, UniquenessLockRecord
from ...values import Claim, EnqueuableJob
from .base import (
    CLAIM_RETURNING,
    CLAIM_UPDATE_SQL,
    INSERT_COLUMNS,
    JOB_TABLE,
    READY,
    Engine,
    claim_candidates_sql,
    encoded_row,
)

logger = logging.getLogger("django_rexecutor.backends")

_NOW = "UTC_TIMESTAMP(6)"
_EXECUTING = "executing"
_READY = ", ".join(f"'{s}'" for s in READY)
#: The claim's row list: MySQL casts to ``CHAR``, not ``TEXT``.
_RETURNING = CLAIM_RETURNING.replace(" AS text)", " AS char)")
_ONE_ROW = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS.split(","))) + ")"
INSERT_SQL = f"INSERT INTO {JOB_TABLE} ({INSERT_COLUMNS}) VALUES "
#: Rows per multi-row ``INSERT`` of ``insert_many`` (and a byte budget below the server's
#: default 16 MB ``max_allowed_packet``).
INSERT_CHUNK = 1000
INSERT_CHUNK_BYTES = 4 * 1024 * 1024
_LOCK_TABLE = UniquenessLockRecord._meta.db_table
_ERROR_TABLE = JobErrorRecord._meta.db_table
LOCK_SLOT_SQL = (
    f"INSERT INTO {_LOCK_TABLE} (slot, version) VALUES (%s, 1)"
    # LAST_INSERT_ID(expr) makes the new version the statement's insert id (0 when the row
    # was inserted, at version 1): no read after the upsert.
    " ON DUPLICATE KEY UPDATE version = LAST_INSERT_ID(version + 1)"
)
_SLOT_VERSION_SQL = f"SELECT version FROM {_LOCK_TABLE} WHERE slot = %s"
#: ``GET_LOCK`` names are at most 64 characters.
MAX_LOCK_NAME = 64
_CONFLICT_MESSAGE = (
    "A concurrent enqueue for the same uniqueness rule committed after this transaction's "
    "snapshot was taken (InnoDB's default isolation level REPEATABLE READ, or SERIALIZABLE), "
    "so its job cannot be seen here and nothing was enqueued. Roll back and retry the whole "
    "transaction, or enqueue outside it (or in a READ COMMITTED one)."
)
#: The deepest nesting of lists and objects each server's JSON functions accept.
MARIADB_MAX_JSON_DEPTH = 31
MYSQL_MAX_JSON_DEPTH = 100
_SNAPSHOT_LEVELS = {"repeatable read", "serializable"}
#: Per thread: whether the current ``unique_transaction`` is one of our own (READ COMMITTED).
_unique_state = threading.local()


class MySQLEngine(Engine):
    vendor = "mysql"
    due_sql = _NOW
    attempted_at_sql = _NOW
    # As on PostgreSQL: concurrent claimers skip each other's rows instead of waiting.
    claim_lock_sql = " FOR UPDATE SKIP LOCKED"
    # Without partial indexes, the model's ready index also holds finished jobs, and a
    # locking read locks every row it walks: the claim reads the index that starts with the
    # status (migration 0002), so it walks, and locks, only ready jobs.
    claim_index_hint = " USE INDEX (rexecutor_job_ready_mysql_idx)"
    # No notifications between processes: the poll is the pickup latency (half of it on
    # average) and the idle cost (one indexed SELECT per poll; see docs/databases.md).
    default_poll_interval = 0.5

    @property
    def max_json_depth(self) -> int:
        """The deepest JSON the server's JSON columns take."""
        return MARIADB_MAX_JSON_DEPTH if self.connection.mysql_is_mariadb else MYSQL_MAX_JSON_DEPTH  # type: ignore[attr-defined]

    @property
    def now_sql(self) -> str:
        return _NOW

    def clock_value(self, value: Any) -> datetime:
        return value.replace(tzinfo=UTC)

    # -- enqueue -------------------------------------------------------------------------
    def insert(self, job: EnqueuableJob, limit: int | None) -> int:
        """One raw ``INSERT`` in the caller's transaction (no model instance); the id is the
        connection's last insert id."""
        with self.connection.cursor() as cursor:
            cursor.execute(INSERT_SQL + _ONE_ROW, _row(job, limit, self.max_json_depth))
            return int(cursor.lastrowid)

    def insert_many(self, jobs: Sequence[EnqueuableJob], limit: int | None) -> list[int]:
        """Multi-row ``INSERT`` statements in one transaction. MariaDB returns the ids
        (``INSERT … RETURNING``); MySQL gives the first, and the others follow it only when
        the server hands out consecutive ids per statement (``innodb_autoinc_lock_mode`` ≤ 1
        and ``auto_increment_increment`` = 1); otherwise each row is inserted alone."""
        connection = self.connection
        returning = bool(getattr(connection, "mysql_is_mariadb", False))
        rows = [_row(job, limit, self.max_json_depth) for job in jobs]
        ids: list[int] = []
        with self.atomic(), connection.cursor() as cursor:
            consecutive = returning or _consecutive_ids(cursor)
            for chunk in _chunks(rows):
                if not consecutive:
                    for row in chunk:
                        cursor.execute(INSERT_SQL + _ONE_ROW, row)
                        ids.append(int(cursor.lastrowid))
                    continue
                sql = INSERT_SQL + ", ".join([_ONE_ROW] * len(chunk))
                params = [value for row in chunk for value in row]
                if returning:
                    cursor.execute(sql + " RETURNING id", params)
                    ids += [int(r[0]) for r in cursor.fetchall()]
                else:
                    cursor.execute(sql, params)
                    first = int(cursor.lastrowid)
                    ids += range(first, first + len(chunk))
        return ids

    @contextlib.contextmanager
    def unique_transaction(self) -> Iterator[None]:
        """A transaction in which unique enqueues see every job committed before their lock
        was granted.

        A transaction of our own is made ``READ COMMITTED``: under InnoDB's default,
        ``REPEATABLE READ``, its reads would keep the snapshot of its first read, taken before
        the lock was granted. Inside a caller's ``REPEATABLE READ`` or ``SERIALIZABLE``
        transaction, ``lock_slot`` detects that a concurrent enqueue committed after the
        snapshot and raises ``UniquenessConflict``, as PostgreSQL's serialization error does;
        so does a deadlock there (``SERIALIZABLE`` locks what the caller read), after which
        InnoDB has rolled the caller's transaction back."""
        connection = self.connection
        own = not connection.in_atomic_block and connection.get_autocommit()
        state = _unique_state
        outer, state.own = getattr(state, "own", True), own
        try:
            with self.atomic():
                if own:
                    # Applies to the transaction the atomic block starts with its next statement.
                    with connection.cursor() as cursor:
                        cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                yield
        except OperationalError as exc:
            # Under SERIALIZABLE, InnoDB locks what the caller's transaction read, and two
            # enqueues of one rule can deadlock: InnoDB rolls the whole transaction back.
            if not own and _error_code(exc) == _DEADLOCK:
                raise UniquenessConflict(_CONFLICT_MESSAGE) from exc
            raise
        finally:
            state.own = outer

    def lock_slot(self, slot: int) -> None:
        """Upsert the slot's lock row (which waits for a concurrent enqueue on the slot to
        end). In a snapshot transaction of the caller's, the slot's version is read from the
        snapshot first (one more query): if the version after our upsert is not one more,
        another enqueue committed since the snapshot, and its job is invisible to the
        duplicate check."""
        own = getattr(_unique_state, "own", True)
        snapshot = not own and _snapshot_isolation(self.connection)
        with self.connection.cursor() as cursor:
            before = 0
            if snapshot:
                cursor.execute(_SLOT_VERSION_SQL, [slot])
                row = cursor.fetchone()
                before = int(row[0]) if row else 0
            cursor.execute(LOCK_SLOT_SQL, [slot])
            if snapshot and (int(cursor.lastrowid or 0) or 1) != before + 1:
                raise UniquenessConflict(_CONFLICT_MESSAGE)

    # -- claims --------------------------------------------------------------------------
    def claim(self, worker_id: str, wanted: Mapping[str, int], limit: int) -> list[Any]:
        """Select the candidates (``claim_candidates_sql``, ``SKIP LOCKED``) first without a
        transaction: an idle poll is that one statement. If there are any, select them again
        in a transaction, holding their row locks, update exactly those and read them back."""
        candidates, params = claim_candidates_sql(self, wanted, limit)
        connection = self.connection
        with connection.cursor() as cursor:
            if not connection.in_atomic_block:
                cursor.execute(candidates, params)
                if not cursor.fetchall():
                    return []
            with self._transaction(cursor):
                cursor.execute(candidates, params)
                ids = [row[0] for row in cursor.fetchall()]
                return self._take(cursor, worker_id, ids) if ids else []

    def claim_ids(self, worker_id: str, ids: Sequence[int]) -> list[Any]:
        """``Engine.claim_ids`` without ``RETURNING``, in the caller's transaction: lock the
        jobs among ``ids`` still ready, update exactly those, read them back."""
        if not ids:
            return []
        marks = ", ".join(["%s"] * len(ids))
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {JOB_TABLE} WHERE id IN ({marks}) AND status IN ({_READY})"
                " FOR UPDATE",
                list(ids),
            )
            taken = [int(row[0]) for row in cursor.fetchall()]
            if not taken:
                return []
            return self._take(cursor, worker_id, taken)

    def _take(self, cursor: Any, worker_id: str, ids: Sequence[int]) -> list[Any]:
        """Make the locked ready jobs ``ids`` executing under ``worker_id``; their rows."""
        marks = ", ".join(["%s"] * len(ids))
        update = CLAIM_UPDATE_SQL.format(attempted_at=self.attempted_at_sql)
        cursor.execute(f"{update} WHERE id IN ({marks})", [worker_id, *ids])
        cursor.execute(
            f"SELECT {_RETURNING} FROM {JOB_TABLE} WHERE id IN ({marks})"
            " ORDER BY priority, scheduled_at, id",
            list(ids),
        )
        return list(cursor.fetchall())

    def complete(self, claims: Sequence[Claim]) -> set[int]:
        """Per chunk, one transaction: lock the jobs still executing under their claims with
        no cancel requested, and complete exactly those."""
        completed: set[int] = set()
        with self.connection.cursor() as cursor:
            for start in range(0, len(claims), 250):
                chunk = claims[start : start + 250]
                fence = ", ".join(["(%s, %s, %s)"] * len(chunk))
                marks = ", ".join(["%s"] * len(chunk))
                params: list[Any] = [c.job_id for c in chunk]
                for c in chunk:
                    params += (c.job_id, c.attempt, c.worker_id)
                with self._transaction(cursor):
                    cursor.execute(
                        f"SELECT id FROM {JOB_TABLE} WHERE id IN ({marks})"
                        f" AND (id, attempt, claimed_by) IN ({fence})"
                        f" AND status = '{_EXECUTING}' AND cancel_requested_at IS NULL"
                        # Workflow steps release their dependents as they complete: the
                        # backend completes those itself (as COMPLETE_SQL leaves them).
                        " AND workflow_id IS NULL FOR UPDATE",
                        params,
                    )
                    ids = [int(row[0]) for row in cursor.fetchall()]
                    if ids:
                        cursor.execute(
                            f"UPDATE {JOB_TABLE} SET status = 'complete', completed_at = {_NOW}"
                            f" WHERE id IN ({', '.join(['%s'] * len(ids))})",
                            ids,
                        )
                completed.update(ids)
        return completed

    @contextlib.contextmanager
    def _transaction(self, cursor: Any) -> Iterator[None]:
        """A transaction for the hot paths: ``START TRANSACTION`` … ``COMMIT`` on the cursor
        (two round trips, where Django's ``atomic`` takes three by switching autocommit off
        and on); inside a caller's transaction, a savepoint."""
        if self.connection.in_atomic_block:
            with self.atomic():
                yield
            return
        cursor.execute("START TRANSACTION")
        try:
            yield
        except BaseException:
            with contextlib.suppress(DatabaseError):
                cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    # -- pruning -------------------------------------------------------------------------
    def delete_jobs(self, ids: Sequence[int], where: str, params: Sequence[Any]) -> int:
        # Lock the jobs first (so no claim or rerun changes them meanwhile), then delete the
        # errors of, and the jobs that, the condition still matches.
        marks = ", ".join(["%s"] * len(ids))
        covered = f"FROM {JOB_TABLE} WHERE {JOB_TABLE}.id IN ({marks}) AND {where}"
        all_params = [*ids, *params]
        with self.atomic(), self.connection.cursor() as cursor:
            cursor.execute(f"SELECT id {covered} FOR UPDATE", all_params)
            if not cursor.fetchall():
                return 0
            cursor.execute(
                f"DELETE FROM {_ERROR_TABLE} WHERE job_id IN (SELECT id {covered})", all_params
            )
            cursor.execute(f"DELETE {covered}", all_params)
            return int(cursor.rowcount)

    # -- periodic work ------------------------------------------------------------------
    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """A named lock (``GET_LOCK``), released by the server if the connection dies. Its
        names are server-wide, so the name includes the database's."""
        key = lock_name(str(self.connection.settings_dict["NAME"]), name)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", [key])
            row = cursor.fetchone()
        held = bool(row and row[0])
        try:
            yield held
        finally:
            if held:
                try:
                    with self.connection.cursor() as cursor:
                        cursor.execute("SELECT RELEASE_LOCK(%s)", [key])
                except DatabaseError:
                    logger.debug("Could not release the named lock %r", name, exc_info=True)


def lock_name(database: str, name: str) -> str:
    """The ``GET_LOCK`` name of ``try_lock(name)`` on ``database``: readable when it fits in
    64 characters, else a prefix and a hash of the whole."""
    full = f"django_rexecutor.{database}.{name}"
    if len(full) <= MAX_LOCK_NAME:
        return full
    digest = hashlib.blake2b(full.encode(), digest_size=16).hexdigest()
    return f"{full[: MAX_LOCK_NAME - len(digest) - 1]}.{digest}"


def _row(job: EnqueuableJob, limit: int | None, max_depth: int) -> tuple[Any, ...]:
    """``encoded_row`` with its datetimes as MySQL's driver needs them (naive UTC), its JSON
    checked against the server's nesting limit."""
    row = encoded_row(job, timezone.now(), limit)
    for what, text in (("data", row[2]), ("metadata", row[3])):
        if text is not None:
            check_json_depth(text, what, max_depth)
    return tuple(
        timezone.make_naive(v, UTC) if isinstance(v, datetime) and timezone.is_aware(v) else v
        for v in row
    )


def check_json_depth(text: str, what: str, max_depth: int) -> None:
    """Refuse JSON ``text`` nested deeper than the server stores (MariaDB's JSON functions,
    and so the JSON columns' ``json_valid`` check, stop at 32 levels; MySQL's at 100) with a
    message naming the column, instead of the server's anonymous constraint error."""
    if text.count("[") + text.count("{") <= max_depth:  # cheap: nearly every payload
        return
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > max_depth:
        raise EncodeDecodeError(
            f"The job's {what} is nested {deepest} lists or objects deep; this database stores "
            f"JSON at most {max_depth} deep. Flatten the value (or store the deep part as a "
            "JSON string)."
        )


def _chunks(rows: Sequence[tuple[Any, ...]]) -> Iterator[Sequence[tuple[Any, ...]]]:
    """``rows`` in chunks of at most ``INSERT_CHUNK`` rows and about ``INSERT_CHUNK_BYTES``."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        size += sum(len(v) for v in row if isinstance(v, str))
        if i + 1 - start >= INSERT_CHUNK or size >= INSERT_CHUNK_BYTES:
            yield rows[start : i + 1]
            start, size = i + 1, 0
    if start < len(rows):
        yield rows[start:]


def _consecutive_ids(cursor: Any) -> bool:
    """Whether a multi-row ``INSERT`` gets consecutive ids on this server."""
    cursor.execute("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment")
    mode, increment = cursor.fetchone()
    return int(mode) <= 1 and int(increment) == 1


#: ER_LOCK_DEADLOCK: InnoDB chose this transaction as a deadlock's victim and rolled it back.
_DEADLOCK = 1213


def _error_code(exc: BaseException) -> int | None:
    args = getattr(exc.__cause__, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _snapshot_isolation(connection: Any) -> bool:
    """Whether the connection's transactions read one snapshot throughout: its
    ``OPTIONS["isolation_level"]``, or the server's default when that is unset."""
    level = getattr(connection, "isolation_level", None)
    if not level:
        with connection.cursor() as cursor:
            # MariaDB before 11.1 knows only the older name, MySQL 8 only the newer.
            name = "tx_isolation" if connection.mysql_is_mariadb else "transaction_isolation"
            cursor.execute(f"SELECT @@SESSION.{name}")
            level = str(cursor.fetchone()[0]).replace("-", " ")
    return str(level).lower() in _SNAPSHOT_LEVELS


__all__ = ["MySQLEngine", "lock_name"]
