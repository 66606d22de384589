"""``LockConformance``: ``try_lock``, the leadership lock of periodic work (one pruner at a
time): one holder per name, another caller told ``False`` at once instead of waiting, the lock
released when its block ends (also by an exception), names independent of each other.

A store that hands the lock to every caller (switch ``try_lock_excludes = False``, e.g.
Django's backend on SQLite, which runs one writer at a time) is checked for everything but the
exclusion."""

from __future__ import annotations

import time

import pytest

from ...backends.base import Backend
from .base import PROMPTLY, ConformanceBase

_LOCK = "conformance-leader"
_OTHER_LOCK = "conformance-other"


class LockConformance(ConformanceBase):
    """Leadership locks; adoptable alone with ``ConformanceBase``."""

    def try_elsewhere(self, backend: Backend, name: str) -> bool:
        """Try the lock from another thread (another connection), as another process would;
        the attempt must not wait."""

        def attempt() -> tuple[bool, float]:
            started = time.monotonic()
            with backend.try_lock(name) as held:
                return held, time.monotonic() - started

        held, took = self.in_thread(attempt)
        assert took < PROMPTLY, f"try_lock waited {took:.2f}s; it must answer at once"
        assert isinstance(held, bool)
        return held

    def test_a_lock_is_held_by_one_caller_at_a_time(self, backend: Backend) -> None:
        with backend.try_lock(_LOCK) as held:
            assert held is True
            elsewhere = self.try_elsewhere(backend, _LOCK)
            again = self.try_elsewhere(backend, _LOCK)
            if self.try_lock_excludes:
                assert elsewhere is False, "another caller got a lock that is held"
                assert again is False, "a caller that did not get the lock released it"
        assert self.try_elsewhere(backend, _LOCK) is True, "released when the block ends"

    def test_a_lock_can_be_taken_again_after_its_release(self, backend: Backend) -> None:
        for _ in range(3):
            with backend.try_lock(_LOCK) as held:
                assert held is True
        assert self.try_elsewhere(backend, _LOCK) is True
        with backend.try_lock(_LOCK) as held:
            assert held is True

    def test_a_lock_is_released_when_its_block_raises(self, backend: Backend) -> None:
        with pytest.raises(RuntimeError, match="pruning failed"), backend.try_lock(_LOCK) as held:
            assert held is True
            raise RuntimeError("pruning failed")
        assert self.try_elsewhere(backend, _LOCK) is True
        with backend.try_lock(_LOCK) as again:
            assert again is True

    def test_locks_of_distinct_names_are_independent(self, backend: Backend) -> None:
        with backend.try_lock(_LOCK) as held:
            assert held is True
            assert self.try_elsewhere(backend, _OTHER_LOCK) is True
            with backend.try_lock(_OTHER_LOCK) as other:
                assert other is True
                if self.try_lock_excludes:
                    assert self.try_elsewhere(backend, _LOCK) is False
                    assert self.try_elsewhere(backend, _OTHER_LOCK) is False
            assert self.try_elsewhere(backend, _OTHER_LOCK) is True
        assert self.try_elsewhere(backend, _LOCK) is True
