"""Queries the chaos scenarios share: job rows, errors and side effects, read outside Django."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.chaos.conftest import Db


def job_row(db: Db, job_id: int) -> tuple[Any, ...]:
    """``(status, attempt, claimed_by)`` of one job."""
    return db.rows("SELECT status, attempt, claimed_by FROM rexecutor_job WHERE id = %s", [job_id])[
        0
    ]


def errors_of(db: Db, job_id: int) -> list[tuple[Any, ...]]:
    """``(attempt, error_type, message)`` of one job's error history, oldest first."""
    return db.rows(
        "SELECT attempt, error_type, message FROM rexecutor_job_error WHERE job_id = %s ORDER BY id",
        [job_id],
    )


def effects_per_job(db: Db, label: str = "effect") -> Counter[int]:
    return Counter(
        dict(
            db.rows(
                "SELECT job_id, count(*) FROM demo_sideeffect WHERE label = %s GROUP BY job_id",
                [label],
            )
        )
    )


def duplicate_effects(db: Db, total: int, label: str = "effect") -> tuple[int, int]:
    """``(jobs with more than one side effect, extra side effects)``; asserts none is missing."""
    per_job = effects_per_job(db, label)
    assert len(per_job) == total, f"{total - len(per_job)} completed job(s) without a side effect"
    return sum(1 for n in per_job.values() if n > 1), sum(n - 1 for n in per_job.values())
