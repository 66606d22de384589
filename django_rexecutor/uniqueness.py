"""Uniqueness rules: when does a new job duplicate an existing one, and what happens then.

Keys are hashed with a stable hash of their canonical JSON (never Python's salted ``hash()``),
so every process and every host agrees on them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from .backoff import to_timedelta
from .encoding import stable_hash, to_json_native
from .status import JobStatus

_UNSET: Any = object()


def _statuses(statuses: Iterable[JobStatus | str], name: str) -> frozenset[JobStatus]:
    if isinstance(statuses, str):
        raise TypeError(f"{name} takes a list of statuses, not the string {statuses!r}.")
    parsed = frozenset(JobStatus.parse(s) for s in statuses)
    if not parsed:
        raise ValueError(f"{name} needs at least one status.")
    return parsed


@dataclass(frozen=True)
class Replace:
    """Which fields of a matched job a conflicting enqueue overwrites, and in which statuses.
    Build it like ``Replace.priority().and_data().for_statuses(["scheduled", "retryable"])``."""

    fields: frozenset[str] = frozenset()
    statuses: frozenset[JobStatus] = frozenset({JobStatus.SCHEDULED})

    FIELDS = ("priority", "data", "metadata", "scheduled_at", "max_attempts")

    def _with(self, name: str) -> Replace:
        return replace(self, fields=self.fields | {name})

    @classmethod
    def priority(cls) -> Replace:
        return cls()._with("priority")

    @classmethod
    def data(cls) -> Replace:
        return cls()._with("data")

    @classmethod
    def metadata(cls) -> Replace:
        return cls()._with("metadata")

    @classmethod
    def scheduled_at(cls) -> Replace:
        return cls()._with("scheduled_at")

    @classmethod
    def max_attempts(cls) -> Replace:
        return cls()._with("max_attempts")

    def and_priority(self) -> Replace:
        return self._with("priority")

    def and_data(self) -> Replace:
        return self._with("data")

    def and_metadata(self) -> Replace:
        return self._with("metadata")

    def and_scheduled_at(self) -> Replace:
        return self._with("scheduled_at")

    def and_max_attempts(self) -> Replace:
        return self._with("max_attempts")

    def for_statuses(self, statuses: Iterable[JobStatus | str]) -> Replace:
        return replace(self, statuses=_statuses(statuses, "Replace.for_statuses"))


@dataclass(frozen=True)
class UniquenessCriteria:
    """Decides whether a new job duplicates an existing one.

    ``key``: a JSON-native value; without ``by_executor`` it matches jobs of every executor.
    ``executor``: only jobs of the same executor match. ``window``: the existing job's
    ``scheduled_at`` lies within ± window (inclusive) of the new job's. ``statuses``: which
    existing statuses count (default: scheduled only)."""

    key: Any = _UNSET
    executor: bool = False
    window: timedelta | None = None
    statuses: frozenset[JobStatus] = frozenset({JobStatus.SCHEDULED})
    on_conflict_replace: Replace | None = None
    disabled: bool = False

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def none(cls) -> UniquenessCriteria:
        """Opt one enqueue out of its executor's default uniqueness rule."""
        return cls(disabled=True)

    @classmethod
    def by_key(cls, key: Any) -> UniquenessCriteria:
        return cls().and_key(key)

    @classmethod
    def by_executor(cls) -> UniquenessCriteria:
        return cls().and_executor()

    @classmethod
    def within(cls, window: timedelta | float) -> UniquenessCriteria:
        return cls().and_within(window)

    @classmethod
    def by_statuses(cls, statuses: Iterable[JobStatus | str]) -> UniquenessCriteria:
        return cls().and_statuses(statuses)

    # -- combinators -------------------------------------------------------------------
    def and_key(self, key: Any) -> UniquenessCriteria:
        return replace(self, key=to_json_native(key, what="uniqueness key"), disabled=False)

    def and_executor(self) -> UniquenessCriteria:
        return replace(self, executor=True, disabled=False)

    def and_within(self, window: timedelta | float) -> UniquenessCriteria:
        delta = to_timedelta(window, name="uniqueness window")
        if delta < timedelta(0):
            raise ValueError(f"The uniqueness window must not be negative, got {delta!r}.")
        return replace(self, window=delta, disabled=False)

    def and_statuses(self, statuses: Iterable[JobStatus | str]) -> UniquenessCriteria:
        return replace(self, statuses=_statuses(statuses, "UniquenessCriteria.and_statuses"))

    def on_conflict_do_nothing(self) -> UniquenessCriteria:
        return replace(self, on_conflict_replace=None)

    def on_conflict(self, replace_: Replace) -> UniquenessCriteria:
        if not isinstance(replace_, Replace):
            raise TypeError(f"on_conflict takes a Replace, got {replace_!r}.")
        return replace(self, on_conflict_replace=replace_)

    # -- helpers for backends ----------------------------------------------------------
    @property
    def has_key(self) -> bool:
        return self.key is not _UNSET

    @property
    def key_hash(self) -> str | None:
        """Stable hash stored on jobs enqueued with a key."""
        return stable_hash(self.key) if self.has_key else None

    def lock_id(self, executor: str) -> int:
        """A signed 64-bit number identifying what this rule compares, for advisory locks:
        two enqueues that could conflict always compute the same number. A keyed rule locks
        on the key alone, because rules with the same key match each other's jobs whether or
        not they also name the executor."""
        if self.has_key:
            scope: dict[str, str | None] = {"key": self.key_hash}
        else:
            scope = {"key": None, "executor": executor if self.executor else None}
        return int(stable_hash(scope)[:16], 16) - (1 << 63)
