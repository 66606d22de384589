"""Uniqueness rules: when does a new job duplicate an existing one, and what happens then.

Keys are hashed with a stable hash of their canonical JSON (never Python's salted ``hash()``),
so every process and every host agrees on them."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, cast

from .backoff import to_timedelta
from .encoding import stable_hash, to_json_native
from .status import JobStatus

_UNSET: Any = object()

#: Rows of the PostgreSQL uniqueness lock table (``models.UniquenessLockRecord``): rules whose
#: lock ids share a slot serialise against each other, so there are plenty of them.
LOCK_SLOTS = 65_536

#: The longest meaningful window: no two datetimes are further apart.
MAX_WINDOW = datetime.max - datetime.min


class _step[Rule, **Args]:
    """A step of a rule builder. Read on the class it starts a new rule
    (``UniquenessCriteria.by_key(1)``); read on an instance it extends that rule
    (``rule.by_key(1)``). So every name works anywhere in a chain and no step drops what
    the steps before it said, whatever their order."""

    def __init__(self, method: Callable[Concatenate[Rule, Args], Rule]) -> None:
        self._method = method
        self.__doc__ = method.__doc__
        self.__name__ = method.__name__

    def __get__(self, instance: Rule | None, owner: type[Rule]) -> Callable[Args, Rule]:
        start = owner() if instance is None else instance
        return cast(Callable[Args, Rule], types.MethodType(self._method, start))


def _statuses(statuses: Iterable[JobStatus | str], name: str) -> frozenset[JobStatus]:
    if isinstance(statuses, str):
        raise TypeError(f"{name} takes a list of statuses, not the string {statuses!r}.")
    parsed = frozenset(JobStatus.parse(s) for s in statuses)
    if not parsed:
        raise ValueError(f"{name} needs at least one status.")
    return parsed


def _shifted(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, saturated at the ends of the calendar instead of overflowing."""
    try:
        return at + delta
    except OverflowError:
        edge = datetime.max if delta > timedelta(0) else datetime.min
        return edge.replace(tzinfo=at.tzinfo or UTC)


@dataclass(frozen=True)
class Replace:
    """Which fields of a matched job a conflicting enqueue overwrites, and in which statuses.
    Build it like ``Replace.priority().data().for_statuses(["scheduled", "retryable"])``; the
    ``and_*`` names are the same steps."""

    fields: frozenset[str] = frozenset()
    statuses: frozenset[JobStatus] = frozenset({JobStatus.SCHEDULED})

    FIELDS = ("priority", "data", "metadata", "scheduled_at", "max_attempts")

    def _with(self, name: str) -> Replace:
        return replace(self, fields=self.fields | {name})

    @_step
    def priority(self) -> Replace:
        return self._with("priority")

    @_step
    def data(self) -> Replace:
        return self._with("data")

    @_step
    def metadata(self) -> Replace:
        return self._with("metadata")

    @_step
    def scheduled_at(self) -> Replace:
        return self._with("scheduled_at")

    @_step
    def max_attempts(self) -> Replace:
        return self._with("max_attempts")

    @_step
    def for_statuses(self, statuses: Iterable[JobStatus | str]) -> Replace:
        return replace(self, statuses=_statuses(statuses, "Replace.for_statuses"))

    and_priority = priority
    and_data = data
    and_metadata = metadata
    and_scheduled_at = scheduled_at
    and_max_attempts = max_attempts


@dataclass(frozen=True)
class UniquenessCriteria:
    """Decides whether a new job duplicates an existing one.

    ``key``: a JSON-native value; without ``by_executor`` it matches jobs of every executor.
    ``executor``: only jobs of the same executor match. ``window``: the existing job's
    ``scheduled_at`` lies within ± window (inclusive) of the new job's. ``statuses``: which
    existing statuses count (default: scheduled only).

    Every step (``by_key``, ``by_executor``, ``within``, ``by_statuses``, ``on_conflict``, and
    their ``and_*`` names) starts a rule on the class and extends one on an instance."""

    key: Any = _UNSET
    executor: bool = False
    window: timedelta | None = None
    statuses: frozenset[JobStatus] = frozenset({JobStatus.SCHEDULED})
    on_conflict_replace: Replace | None = None
    disabled: bool = False

    def _with(self, **changes: Any) -> UniquenessCriteria:
        if self.disabled:
            raise TypeError(
                "UniquenessCriteria.none() opts out of uniqueness; it cannot be extended. "
                "Start a new rule instead, e.g. UniquenessCriteria.by_key(...)."
            )
        return replace(self, **changes)

    @_step
    def none(self) -> UniquenessCriteria:
        """Opt one enqueue out of its executor's default uniqueness rule."""
        if self != UniquenessCriteria():
            raise TypeError(
                f"none() cannot extend the rule {self!r}: it opts out of uniqueness "
                "altogether. Use UniquenessCriteria.none() on its own."
            )
        return replace(self, disabled=True)

    @_step
    def by_key(self, key: Any) -> UniquenessCriteria:
        return self._with(key=to_json_native(key, what="uniqueness key"))

    @_step
    def by_executor(self) -> UniquenessCriteria:
        return self._with(executor=True)

    @_step
    def within(self, window: timedelta | float) -> UniquenessCriteria:
        delta = to_timedelta(window, name="uniqueness window")
        if delta > MAX_WINDOW:
            raise ValueError(
                f"The uniqueness window {delta!r} is longer than any two datetimes can be apart "
                f"(at most {MAX_WINDOW!r}); to match jobs whenever they are scheduled, leave "
                "out within()."
            )
        return self._with(window=delta)

    @_step
    def by_statuses(self, statuses: Iterable[JobStatus | str]) -> UniquenessCriteria:
        return self._with(statuses=_statuses(statuses, "UniquenessCriteria.by_statuses"))

    @_step
    def on_conflict(self, replace_: Replace) -> UniquenessCriteria:
        if not isinstance(replace_, Replace):
            raise TypeError(f"on_conflict takes a Replace, got {replace_!r}.")
        return self._with(on_conflict_replace=replace_)

    @_step
    def on_conflict_do_nothing(self) -> UniquenessCriteria:
        return self._with(on_conflict_replace=None)

    and_key = by_key
    and_executor = by_executor
    and_within = within
    and_statuses = by_statuses

    # -- helpers for backends ----------------------------------------------------------
    @property
    def has_key(self) -> bool:
        return self.key is not _UNSET

    @property
    def key_hash(self) -> str | None:
        """Stable hash stored on jobs enqueued with a key."""
        return stable_hash(self.key) if self.has_key else None

    def window_bounds(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The inclusive range of ``scheduled_at`` the window matches around ``at`` (clamped
        to the calendar), or ``None`` without a window."""
        if self.window is None:
            return None
        return _shifted(at, -self.window), _shifted(at, self.window)

    def lock_id(self, executor: str) -> int:
        """A signed 64-bit number identifying what this rule compares, for locks:
        two enqueues that could conflict always compute the same number. A keyed rule locks
        on the key alone, because rules with the same key match each other's jobs whether or
        not they also name the executor."""
        if self.has_key:
            scope: dict[str, str | None] = {"key": self.key_hash}
        else:
            scope = {"key": None, "executor": executor if self.executor else None}
        return int(stable_hash(scope)[:16], 16) - (1 << 63)

    def lock_slot(self, executor: str) -> int:
        """The row of the uniqueness lock table this rule's enqueues meet at."""
        return self.lock_id(executor) % LOCK_SLOTS
