"""Checks shared by the job builder, ``update_job`` and the backends: each raises a clear
error naming the bad value, before anything is written."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from .encoding import to_json, to_json_native
from .exceptions import PayloadTooLarge

if TYPE_CHECKING:
    from .backends.base import EnqueuableJob


def check_max_attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_attempts must be an int, got {value!r}.")
    if value < 1:
        raise ValueError(f"max_attempts must be at least 1, got {value}.")
    if value > 2**31 - 2:
        # The column is 32-bit and rerun_job adds one.
        raise ValueError(f"max_attempts must be below 2**31 - 1, got {value}.")
    return value


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be a non-negative int (0 is most urgent), got {value!r}.")
    if value < 0:
        raise ValueError(f"priority must be >= 0 (0 is most urgent), got {value}.")
    if value > 2**31 - 1:
        raise ValueError(f"priority must fit in 32 bits, got {value}.")
    return value


def check_tags(tags: Iterable[object]) -> list[str]:
    if isinstance(tags, (str, bytes)):
        raise TypeError(f"tags must be a list of strings, not the string {tags!r}.")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"Every tag must be a string; got {tag!r} ({type(tag).__name__}).")
        to_json_native(tag, what="tag")
        if tag not in out:
            out.append(tag)
    return out


def check_aware(value: object, *, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}.")
    if timezone.is_naive(value):
        raise ValueError(
            f"{name} got the naive datetime {value.isoformat()}; pass a timezone-aware one "
            "(e.g. django.utils.timezone.now() + timedelta(...))."
        )
    return value


def check_payload_size(text: str, *, what: str, limit: int | None) -> str:
    """``text``, the JSON of one column of a new job, unless it is longer than ``limit`` bytes
    (it is ASCII: ``to_json`` escapes everything else)."""
    if limit is not None and len(text) > limit:
        raise PayloadTooLarge(what, len(text), limit)
    return text


def check_payloads(job: EnqueuableJob, limit: int | None) -> None:
    """Check every JSON column of a new job against ``limit`` (``MAX_PAYLOAD_BYTES``), for the
    paths that do not encode the row themselves."""
    if limit is None:
        return
    for what, value in (("data", job.data), ("metadata", job.metadata), ("tags", job.tags)):
        if value is not None:
            check_payload_size(to_json(value), what=what, limit=limit)
