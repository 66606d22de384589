"""Reading stored job values defensively.

A row written by a migration script or by hand may hold values the library never writes: tags
that are not a list of strings, JSON nested too deeply for Python, or timestamps Python cannot
represent (PostgreSQL's ``-infinity``, years past 9999). Each reader here returns the value, or
an :class:`Unreadable` naming the raw value and the problem, so one bad row can be reported
instead of failing every row read with it. Timestamps are read from their text form (ISO 8601,
the only ``DateStyle`` psycopg reads either), which cannot fail in the database driver."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

#: How much of a raw value an error message quotes.
RAW_PREVIEW = 200


@dataclass(frozen=True)
class Unreadable:
    """A stored value that could not be read: its raw text and why."""

    raw: str
    problem: str

    def describe(self, field: str) -> str:
        return f"{field}: {self.problem} (stored value: {preview(self.raw)})"

    def __str__(self) -> str:
        return f"unreadable: {self.problem} (stored value: {preview(self.raw)})"


def preview(raw: str) -> str:
    text = repr(raw)
    return text if len(text) <= RAW_PREVIEW else text[:RAW_PREVIEW] + "…"


def read_json(raw: Any) -> Any:
    """A JSON column's text (``None`` for SQL NULL) → the value, or ``Unreadable``."""
    if raw is None or not isinstance(raw, (str, bytes)):
        return raw
    try:
        return json.loads(raw)
    except RecursionError:
        return Unreadable(_text(raw), "JSON nested too deeply for Python to decode")
    except ValueError as exc:
        return Unreadable(_text(raw), f"not valid JSON ({exc})")


def read_tags(raw: Any) -> list[str] | Unreadable:
    """The tags column's text → a list of strings, or ``Unreadable``."""
    value = read_json(raw)
    if isinstance(value, Unreadable):
        return value
    if value is None:
        return []
    if type(value) is not list or any(type(t) is not str for t in value):
        return Unreadable(_text(raw), "tags must be a JSON list of strings")
    return value


def read_datetime(raw: Any, tz: tzinfo | None = UTC) -> datetime | Unreadable | None:
    """A timestamp column's text (aware on PostgreSQL, naive UTC on SQLite) → an aware
    datetime, or ``Unreadable``."""
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=tz)
    try:
        value = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        return Unreadable(_text(raw), "not a timestamp Python can represent (years 1 to 9999)")
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
