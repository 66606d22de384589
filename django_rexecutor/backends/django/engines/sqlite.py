"""The SQLite engine. SQLite runs one writer at a time: a write statement takes the database's
write lock until its transaction ends, which is what makes its claims, uniqueness checks and
two-statement deletes safe without row locks. It has no notifications between processes (the
engine's notifier is the process-local one) and no locks to lead periodic work with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ....models import JobErrorRecord
from .base import JOB_TABLE, Engine

#: The database's clock as SQLite stores timestamps: UTC text with microseconds (Django's
#: format), though its clock has milliseconds.
_NOW = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
_ERROR_TABLE = JobErrorRecord._meta.db_table


class SQLiteEngine(Engine):
    vendor = "sqlite"
    # One writer at a time: a second connection's write would wait for the first's lock.
    supports_parallel_writes = False
    # The claim's cut-off is the end of the current millisecond (``…12.345999``): a job
    # enqueued a moment ago is due, and text comparison orders both formats correctly.
    due_sql = f"{_NOW} || '999'"
    # A job claimed within the millisecond it is due at gets that time as ``attempted_at``,
    # so no attempt seems to start before its job was due.
    attempted_at_sql = f"MAX(scheduled_at, {_NOW})"
    # No row locks: the claim is one statement, and no other connection writes meanwhile.
    claim_lock_sql = ""
    # No notifications between processes, and a poll is a local file read.
    default_poll_interval = 0.2

    def lock_slot(self, slot: int) -> None:
        # A write statement takes SQLite's write lock for the rest of the transaction, so no
        # other process can insert a duplicate meanwhile (whatever the slot).
        with self.connection.cursor() as cursor:
            cursor.execute(f"UPDATE {JOB_TABLE} SET id = id WHERE 0")

    def delete_jobs(self, ids: Sequence[int], where: str, params: Sequence[Any]) -> int:
        # The first write takes the database's write lock, so no other connection can change
        # a job between these two statements.
        marks = ", ".join(["%s"] * len(ids))
        covered_ids = f"SELECT id FROM {JOB_TABLE} WHERE {JOB_TABLE}.id IN ({marks}) AND {where}"
        all_params = [*ids, *params]
        with self.atomic(), self.connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {_ERROR_TABLE} WHERE job_id IN ({covered_ids})", all_params
            )
            cursor.execute(
                f"DELETE FROM {JOB_TABLE} WHERE {JOB_TABLE}.id IN ({marks}) AND {where}",
                all_params,
            )
            return int(cursor.rowcount)

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        # SQLite has no such lock and runs one writer at a time: every caller holds it, and
        # the work it guards must be safe to run twice (the pruner's deletes are fenced).
        yield True

    def clock_value(self, value: Any) -> datetime:
        # SQLite answers with text, converted as Django converts its datetime columns.
        connection = self.connection
        convert = connection.ops.convert_datetimefield_value  # type: ignore[attr-defined]
        return convert(value, None, connection)
