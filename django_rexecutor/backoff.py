"""Retry delays: how long a failed job waits before its next attempt.

A strategy turns an attempt number into a delay. Strategies are immutable values
built fluently (``BackoffStrategy.exponential(4, factor=4).with_max(3600)``), so an
executor can declare one as a class attribute and share it safely between threads.

The arithmetic runs in float seconds and saturates instead of overflowing, so attempt
10,000 of an exponential strategy is simply "the maximum". Jitter is applied *before*
the final clamp, so it never pushes a delay above the maximum or below the minimum
(rexecutor clamped first and jittered afterwards).

This module deliberately imports nothing from Django or the rest of the package: it is
pure arithmetic, and other modules import :func:`to_timedelta` from here.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Self

__all__ = [
    "DEFAULT_BACKOFF",
    "MAX_DELAY",
    "BackoffStrategy",
    "ConstantBackoff",
    "ExponentialBackoff",
    "Jitter",
    "LinearBackoff",
    "PolynomialBackoff",
    "to_timedelta",
]

#: Ceiling for strategies without an explicit maximum: far beyond any useful retry
#: delay, yet small enough that ``now + delay`` stays a valid ``datetime``.
MAX_DELAY = timedelta(days=36525)  # 100 years

_ZERO = timedelta(0)
_TIMEDELTA_MAX_SECONDS = timedelta.max.total_seconds()


def to_timedelta(value: timedelta | float, *, name: str) -> timedelta:
    """Return ``value`` as a non-negative ``timedelta``.

    Durations throughout django-rexecutor (settings, delays, backoff arguments) accept
    a ``timedelta`` or a number of seconds; this is the one place that rule lives.
    ``name`` is the argument's name, used in error messages so the user knows what to
    fix.

    Raises ``TypeError`` for anything that is not a ``timedelta``, ``int`` or ``float``
    (``bool`` included: ``True`` seconds is always a mistake), and ``ValueError`` for
    negative, non-finite or unrepresentably large values.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a timedelta or a number of seconds, "
            f"got {value!r} ({type(value).__name__})."
        )
    else:
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, got {value!r}.")
        try:
            result = timedelta(seconds=value)
        except OverflowError:
            raise ValueError(
                f"{name} is too large to be a duration, got {value!r} seconds; "
                f"the largest is {timedelta.max!r}."
            ) from None
    if result < _ZERO:
        raise ValueError(f"{name} must not be negative, got {value!r}.")
    return result


def _to_number(value: float, *, name: str) -> float:
    """Return ``value`` as a finite float, rejecting ``bool`` and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return number


def _to_float(value: int) -> float:
    """Convert an attempt number to float, saturating at infinity for huge ints."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` that saturates at infinity instead of raising."""
    try:
        return float(base**exponent)
    except OverflowError:
        return math.inf


def _seconds_to_timedelta(seconds: float) -> timedelta:
    """Convert float seconds to a timedelta, clamped to ``[0, timedelta.max]``."""
    if seconds <= 0:
        return _ZERO
    if seconds >= _TIMEDELTA_MAX_SECONDS:
        return timedelta.max
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Jitter:
    """Random spread added to a delay so failed jobs do not all retry at once.

    Build one with :meth:`absolute` or :meth:`relative`. The offset is drawn uniformly
    from ``[-width, +width]`` where ``width = spread + fraction * delay``.
    """

    spread: timedelta = _ZERO
    fraction: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spread", to_timedelta(self.spread, name="jitter spread"))
        fraction = _to_number(self.fraction, name="jitter fraction")
        if not 0 <= fraction <= 1:
            raise ValueError(
                f"jitter fraction must be between 0 and 1 (0.1 means ±10 %), got {self.fraction!r}."
            )
        object.__setattr__(self, "fraction", fraction)

    @classmethod
    def absolute(cls, spread: timedelta | float) -> Jitter:
        """Offset the delay by a uniform random amount in ``[-spread, +spread]``."""
        return cls(spread=to_timedelta(spread, name="jitter spread"))

    @classmethod
    def relative(cls, fraction: float) -> Jitter:
        """Offset the delay by a uniform random amount in ``±fraction`` of the delay."""
        return cls(fraction=fraction)

    def apply(self, delay: timedelta, rng: random.Random | None = None) -> timedelta:
        """Return ``delay`` plus a random offset; never negative.

        Pass a seeded ``rng`` for reproducible results; the module-level generator is
        used otherwise.
        """
        seconds = to_timedelta(delay, name="delay").total_seconds()
        return _seconds_to_timedelta(_jittered_seconds(self, seconds, rng))


def _jittered_seconds(jitter: Jitter, seconds: float, rng: random.Random | None) -> float:
    """``seconds`` plus ``jitter``'s random offset, floored at zero (may be inf)."""
    width = jitter.spread.total_seconds() + jitter.fraction * seconds
    if width == 0:
        return seconds
    uniform = rng.uniform if rng is not None else random.uniform
    return max(0.0, seconds + uniform(-width, width))


@dataclass(frozen=True, kw_only=True)
class BackoffStrategy(ABC):
    """How long to wait before attempt ``n + 1`` after attempt ``n`` failed.

    Build one with :meth:`constant`, :meth:`linear`, :meth:`polynomial` or
    :meth:`exponential`, then refine it with :meth:`with_max`, :meth:`with_min` and
    :meth:`with_jitter`; each returns a new strategy. Before jitter every strategy is
    monotonic non-decreasing in the attempt number; without :meth:`with_max` delays are
    capped at :data:`MAX_DELAY`.
    """

    minimum: timedelta | None = None
    maximum: timedelta | None = None
    jitter: Jitter | None = None

    def __post_init__(self) -> None:
        if self.minimum is not None:
            object.__setattr__(self, "minimum", to_timedelta(self.minimum, name="min"))
        if self.maximum is not None:
            object.__setattr__(self, "maximum", to_timedelta(self.maximum, name="max"))
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"backoff min ({self.minimum!r}) must not be greater than max ({self.maximum!r})."
            )
        if self.jitter is not None and not isinstance(self.jitter, Jitter):
            raise TypeError(
                "jitter must be Jitter.absolute(...), Jitter.relative(...) or None, "
                f"got {self.jitter!r}."
            )

    # -- constructors ----------------------------------------------------------------

    @staticmethod
    def constant(delay: timedelta | float) -> ConstantBackoff:
        """The same ``delay`` after every attempt."""
        return ConstantBackoff(delay=to_timedelta(delay, name="delay"))

    @staticmethod
    def linear(delay: timedelta | float) -> LinearBackoff:
        """``delay * attempt``: 1x, 2x, 3x, …"""
        return LinearBackoff(delay=to_timedelta(delay, name="delay"))

    @staticmethod
    def polynomial(delay: timedelta | float, power: float) -> PolynomialBackoff:
        """``delay * attempt ** power``; ``power`` may be fractional (0.5: sqrt)."""
        return PolynomialBackoff(delay=to_timedelta(delay, name="delay"), power=power)

    @staticmethod
    def exponential(base: timedelta | float, factor: float = 2) -> ExponentialBackoff:
        """``base * factor ** (attempt - 1)``: base, base * factor, base * factor², …"""
        return ExponentialBackoff(base=to_timedelta(base, name="base"), factor=factor)

    # -- refinements -----------------------------------------------------------------

    def with_max(self, maximum: timedelta | float) -> Self:
        """A copy whose delays, jitter included, never exceed ``maximum``."""
        return replace(self, maximum=to_timedelta(maximum, name="max"))

    def with_min(self, minimum: timedelta | float) -> Self:
        """A copy whose delays, jitter included, are never below ``minimum``."""
        return replace(self, minimum=to_timedelta(minimum, name="min"))

    def with_jitter(self, jitter: Jitter | None) -> Self:
        """A copy that randomises each delay with ``jitter`` (``None`` removes it)."""
        return replace(self, jitter=jitter)

    # -- evaluation ------------------------------------------------------------------

    def backoff(self, attempt: int, *, rng: random.Random | None = None) -> timedelta:
        """Delay before the retry that follows failed ``attempt`` (1-based; < 1 is 1).

        The raw delay is clamped to ``[min, max]``, jittered, then clamped again, so
        jitter spreads retries without ever leaving the bounds. Pass a seeded ``rng``
        for reproducible jitter.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise TypeError(f"attempt must be an int, got {attempt!r}.")
        lower = self.minimum if self.minimum is not None else _ZERO
        upper = self.maximum if self.maximum is not None else max(MAX_DELAY, lower)
        lower_s, upper_s = lower.total_seconds(), upper.total_seconds()

        # Clamp before jitter too: the raw value may be infinite, and jittering the
        # clamped value keeps retries spread out once the cap is reached instead of all
        # landing exactly on it.
        seconds = min(max(self._raw_seconds(max(attempt, 1)), lower_s), upper_s)
        if self.jitter is not None:
            seconds = _jittered_seconds(self.jitter, seconds, rng)

        # Final clamp in timedelta space so the bounds hold to the microsecond.
        if seconds >= upper_s:
            return upper
        if seconds <= lower_s:
            return lower
        return min(max(timedelta(seconds=seconds), lower), upper)

    @abstractmethod
    def _raw_seconds(self, attempt: int) -> float:
        """Unbounded delay in seconds for ``attempt`` >= 1; may be inf, never NaN."""


@dataclass(frozen=True, kw_only=True)
class ConstantBackoff(BackoffStrategy):
    """Always ``delay``. See :meth:`BackoffStrategy.constant`."""

    delay: timedelta

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", to_timedelta(self.delay, name="delay"))
        super().__post_init__()

    def _raw_seconds(self, attempt: int) -> float:
        return self.delay.total_seconds()


@dataclass(frozen=True, kw_only=True)
class LinearBackoff(BackoffStrategy):
    """``delay * attempt``. See :meth:`BackoffStrategy.linear`."""

    delay: timedelta

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", to_timedelta(self.delay, name="delay"))
        super().__post_init__()

    def _raw_seconds(self, attempt: int) -> float:
        seconds = self.delay.total_seconds()
        if seconds == 0:  # avoid 0 * inf = NaN for astronomically large attempts
            return 0.0
        return seconds * _to_float(attempt)


@dataclass(frozen=True, kw_only=True)
class PolynomialBackoff(BackoffStrategy):
    """``delay * attempt ** power``. See :meth:`BackoffStrategy.polynomial`."""

    delay: timedelta
    power: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", to_timedelta(self.delay, name="delay"))
        power = _to_number(self.power, name="power")
        if power < 0:
            raise ValueError(
                f"power must be >= 0 (a negative power would shrink delays), got {self.power!r}."
            )
        object.__setattr__(self, "power", power)
        super().__post_init__()

    def _raw_seconds(self, attempt: int) -> float:
        seconds = self.delay.total_seconds()
        if seconds == 0:
            return 0.0
        return seconds * _power(_to_float(attempt), self.power)


@dataclass(frozen=True, kw_only=True)
class ExponentialBackoff(BackoffStrategy):
    """``base * factor ** (attempt - 1)``. See :meth:`BackoffStrategy.exponential`."""

    base: timedelta
    factor: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", to_timedelta(self.base, name="base"))
        factor = _to_number(self.factor, name="factor")
        if factor < 1:
            raise ValueError(
                f"factor must be >= 1 (a smaller factor would shrink delays), got {self.factor!r}."
            )
        object.__setattr__(self, "factor", factor)
        super().__post_init__()

    def _raw_seconds(self, attempt: int) -> float:
        seconds = self.base.total_seconds()
        if seconds == 0 or self.factor == 1:
            # 1.0 ** huge raises while converting the exponent; the answer is just base.
            return seconds
        return seconds * _power(self.factor, _to_float(attempt - 1))


#: The executor default: 4 s, 16 s, 64 s, 256 s, … ±10 %, never more than 7 days.
DEFAULT_BACKOFF: BackoffStrategy = (
    BackoffStrategy.exponential(timedelta(seconds=4), factor=4)
    .with_max(timedelta(days=7))
    .with_jitter(Jitter.relative(0.1))
)
