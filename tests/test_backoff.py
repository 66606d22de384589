"""Behaviour of retry delays: the numbers users see between attempts."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from datetime import timedelta

import pytest

from django_rexecutor.backoff import (
    DEFAULT_BACKOFF,
    MAX_DELAY,
    BackoffStrategy,
    Jitter,
    to_timedelta,
)

SAMPLES = 2000


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def delays(
    strategy: BackoffStrategy, attempts: range, rng: random.Random | None = None
) -> list[timedelta]:
    return [strategy.backoff(attempt, rng=rng) for attempt in attempts]


# -- the numbers of each strategy ---------------------------------------------------------


def test_constant_is_the_same_for_every_attempt() -> None:
    strategy = BackoffStrategy.constant(seconds(30))
    assert delays(strategy, range(1, 6)) == [seconds(30)] * 5


def test_linear_multiplies_by_attempt() -> None:
    strategy = BackoffStrategy.linear(seconds(10))
    assert delays(strategy, range(1, 5)) == [seconds(s) for s in (10, 20, 30, 40)]


def test_polynomial_raises_attempt_to_power() -> None:
    strategy = BackoffStrategy.polynomial(seconds(2), power=2)
    assert delays(strategy, range(1, 5)) == [seconds(s) for s in (2, 8, 18, 32)]


def test_polynomial_accepts_fractional_power() -> None:
    strategy = BackoffStrategy.polynomial(seconds(10), power=0.5)
    assert strategy.backoff(4) == seconds(20)
    assert strategy.backoff(9) == seconds(30)


def test_polynomial_power_zero_is_constant() -> None:
    strategy = BackoffStrategy.polynomial(seconds(7), power=0)
    assert delays(strategy, range(1, 4)) == [seconds(7)] * 3


def test_exponential_defaults_to_doubling() -> None:
    strategy = BackoffStrategy.exponential(seconds(1))
    assert delays(strategy, range(1, 6)) == [seconds(s) for s in (1, 2, 4, 8, 16)]


def test_exponential_accepts_float_factor() -> None:
    strategy = BackoffStrategy.exponential(seconds(8), factor=1.5)
    assert delays(strategy, range(1, 4)) == [seconds(s) for s in (8, 12, 18)]


def test_exponential_factor_one_is_constant() -> None:
    strategy = BackoffStrategy.exponential(seconds(5), factor=1)
    assert delays(strategy, range(1, 4)) == [seconds(5)] * 3


@pytest.mark.parametrize("value", [timedelta(seconds=3), 3, 3.0])
def test_durations_accept_timedelta_or_seconds(value: timedelta | float) -> None:
    assert BackoffStrategy.exponential(value, factor=2).backoff(2) == seconds(6)
    assert BackoffStrategy.constant(value).with_max(value).backoff(9) == seconds(3)


def test_sub_second_durations_are_kept() -> None:
    strategy = BackoffStrategy.exponential(0.25, factor=2)
    assert strategy.backoff(3) == timedelta(seconds=1)
    assert BackoffStrategy.constant(0.0015).backoff(1) == timedelta(microseconds=1500)


def test_zero_delay_is_allowed() -> None:
    assert BackoffStrategy.exponential(0, factor=10).backoff(10_000) == timedelta(0)


@pytest.mark.parametrize("attempt", [0, -1, -1000])
def test_attempt_below_one_counts_as_one(attempt: int) -> None:
    strategy = BackoffStrategy.exponential(seconds(4), factor=4)
    assert strategy.backoff(attempt) == strategy.backoff(1) == seconds(4)


# -- min and max --------------------------------------------------------------------------


def test_with_max_caps_delays() -> None:
    strategy = BackoffStrategy.exponential(seconds(1)).with_max(seconds(10))
    assert delays(strategy, range(1, 7)) == [seconds(s) for s in (1, 2, 4, 8, 10, 10)]


def test_with_min_raises_small_delays() -> None:
    strategy = BackoffStrategy.linear(seconds(1)).with_min(seconds(3))
    assert delays(strategy, range(1, 6)) == [seconds(s) for s in (3, 3, 3, 4, 5)]


def test_min_equal_to_max_pins_the_delay() -> None:
    strategy = BackoffStrategy.exponential(1).with_min(5).with_max(5)
    assert delays(strategy, range(1, 20)) == [seconds(5)] * 19


def test_min_greater_than_max_is_rejected_in_either_order() -> None:
    with pytest.raises(ValueError, match=r"min .* must not be greater than max"):
        BackoffStrategy.constant(1).with_max(5).with_min(10)
    with pytest.raises(ValueError, match=r"min .* must not be greater than max"):
        BackoffStrategy.constant(1).with_min(10).with_max(5)


def test_without_max_delays_stop_at_the_ceiling() -> None:
    assert BackoffStrategy.exponential(1).backoff(500) == MAX_DELAY


def test_an_explicit_max_beyond_the_ceiling_is_honoured() -> None:
    strategy = BackoffStrategy.exponential(1).with_max(MAX_DELAY * 2)
    assert strategy.backoff(500) == MAX_DELAY * 2


# -- immutability -------------------------------------------------------------------------


def test_refinements_return_new_strategies() -> None:
    base = BackoffStrategy.exponential(1)
    capped = base.with_max(2).with_min(1).with_jitter(Jitter.relative(0.5))
    assert capped is not base
    assert base.backoff(5) == seconds(16)
    assert capped.backoff(5, rng=random.Random(1)) <= seconds(2)
    assert type(capped) is type(base)


def test_strategies_are_frozen_and_comparable() -> None:
    strategy = BackoffStrategy.linear(5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        strategy.maximum = seconds(1)  # type: ignore[misc]
    assert strategy == BackoffStrategy.linear(timedelta(seconds=5))
    assert hash(strategy) == hash(BackoffStrategy.linear(5.0))
    assert strategy.with_jitter(Jitter.relative(0.1)).with_jitter(None) == strategy


# -- jitter -------------------------------------------------------------------------------


def test_relative_jitter_stays_within_fraction_and_varies() -> None:
    rng = random.Random(42)
    jitter = Jitter.relative(0.1)
    samples = [jitter.apply(seconds(100), rng) for _ in range(SAMPLES)]
    assert all(seconds(90) <= s <= seconds(110) for s in samples)
    assert len(set(samples)) > SAMPLES // 2
    assert min(samples) < seconds(92) and max(samples) > seconds(108)


def test_absolute_jitter_stays_within_spread_and_varies() -> None:
    rng = random.Random(7)
    jitter = Jitter.absolute(seconds(5))
    samples = [jitter.apply(seconds(60), rng) for _ in range(SAMPLES)]
    assert all(seconds(55) <= s <= seconds(65) for s in samples)
    assert min(samples) < seconds(56) and max(samples) > seconds(64)


def test_jitter_never_makes_a_delay_negative() -> None:
    rng = random.Random(3)
    jitter = Jitter.absolute(seconds(10))
    samples = [jitter.apply(seconds(1), rng) for _ in range(SAMPLES)]
    assert all(s >= timedelta(0) for s in samples)
    assert timedelta(0) in samples


def test_jitter_with_same_seed_is_reproducible() -> None:
    strategy = DEFAULT_BACKOFF
    first = delays(strategy, range(1, 20), random.Random(5))
    assert first == delays(strategy, range(1, 20), random.Random(5))


def test_jitter_without_rng_uses_global_random() -> None:
    sample = Jitter.relative(0.5).apply(seconds(10))
    assert seconds(5) <= sample <= seconds(15)


def test_zero_jitter_changes_nothing() -> None:
    assert Jitter.relative(0).apply(seconds(10), random.Random(0)) == seconds(10)
    assert Jitter.absolute(0).apply(seconds(10), random.Random(0)) == seconds(10)


def test_jitter_never_pushes_above_max() -> None:
    # rexecutor clamped, then jittered: a capped delay could exceed the cap.
    rng = random.Random(11)
    strategy = (
        BackoffStrategy.exponential(1).with_max(seconds(100)).with_jitter(Jitter.relative(0.5))
    )
    samples = [strategy.backoff(30, rng=rng) for _ in range(SAMPLES)]
    assert all(s <= seconds(100) for s in samples)
    # Jitter still spreads retries below the cap instead of collapsing onto it.
    assert min(samples) < seconds(60)
    assert len(set(samples)) > SAMPLES // 2


def test_jitter_never_pushes_below_min() -> None:
    rng = random.Random(12)
    strategy = (
        BackoffStrategy.constant(seconds(1))
        .with_min(seconds(10))
        .with_jitter(Jitter.absolute(seconds(30)))
    )
    samples = [strategy.backoff(1, rng=rng) for _ in range(SAMPLES)]
    assert all(s >= seconds(10) for s in samples)
    assert max(samples) > seconds(35)


@pytest.mark.parametrize("attempt", [1, 3, 6, 12, 50])
def test_jittered_delays_stay_within_min_and_max(attempt: int) -> None:
    rng = random.Random(attempt)
    strategy = (
        BackoffStrategy.exponential(seconds(2), factor=3)
        .with_min(seconds(5))
        .with_max(seconds(1000))
        .with_jitter(Jitter.relative(1))
    )
    samples = [strategy.backoff(attempt, rng=rng) for _ in range(SAMPLES)]
    assert all(seconds(5) <= s <= seconds(1000) for s in samples)
    assert len(set(samples)) > 1


# -- the default --------------------------------------------------------------------------


def test_default_without_jitter_is_4_16_64_256_seconds() -> None:
    exact = DEFAULT_BACKOFF.with_jitter(None)
    assert delays(exact, range(1, 5)) == [seconds(s) for s in (4, 16, 64, 256)]


@pytest.mark.parametrize(("attempt", "expected"), [(1, 4), (2, 16), (3, 64), (4, 256)])
def test_default_with_jitter_is_within_ten_percent(attempt: int, expected: int) -> None:
    rng = random.Random(attempt)
    samples = [DEFAULT_BACKOFF.backoff(attempt, rng=rng) for _ in range(SAMPLES)]
    assert all(seconds(expected * 0.9) <= s <= seconds(expected * 1.1) for s in samples)
    assert len(set(samples)) > SAMPLES // 2


def test_default_is_capped_at_seven_days() -> None:
    rng = random.Random(0)
    assert DEFAULT_BACKOFF.with_jitter(None).backoff(12) == timedelta(days=7)
    samples = [DEFAULT_BACKOFF.backoff(40, rng=rng) for _ in range(SAMPLES)]
    assert all(timedelta(days=7 * 0.9) <= s <= timedelta(days=7) for s in samples)


# -- monotonicity and overflow ------------------------------------------------------------

STRATEGIES = {
    "constant": BackoffStrategy.constant(3),
    "linear": BackoffStrategy.linear(0.5),
    "polynomial": BackoffStrategy.polynomial(1, power=3.5),
    "exponential": BackoffStrategy.exponential(1, factor=1.1),
    "exponential-capped": BackoffStrategy.exponential(1).with_max(3600).with_min(2),
    "default": DEFAULT_BACKOFF.with_jitter(None),
}


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_delays_never_decrease(strategy: BackoffStrategy) -> None:
    values = delays(strategy, range(1, 201))
    assert values == sorted(values)
    assert all(v >= timedelta(0) for v in values)


@pytest.mark.parametrize("attempt", [1_000, 10_000, 10**6, 10**400])
@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_huge_attempts_do_not_overflow(strategy: BackoffStrategy, attempt: int) -> None:
    delay = strategy.backoff(attempt)
    assert timedelta(0) <= delay <= MAX_DELAY
    assert delay >= strategy.backoff(200)


def test_huge_attempt_reaches_the_max_exactly() -> None:
    strategy = BackoffStrategy.exponential(4, factor=4).with_max(timedelta(days=7))
    assert strategy.backoff(10_000) == timedelta(days=7)
    assert DEFAULT_BACKOFF.backoff(10_000, rng=random.Random(0)) <= timedelta(days=7)
    assert BackoffStrategy.polynomial(1, power=1000).backoff(10_000) == MAX_DELAY


# -- bad arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BackoffStrategy.constant(-1), "delay must not be negative, got -1"),
        (lambda: BackoffStrategy.linear(seconds(-5)), "delay must not be negative"),
        (lambda: BackoffStrategy.exponential(-0.5), "base must not be negative, got -0.5"),
        (lambda: BackoffStrategy.exponential(1, factor=0.5), "factor must be >= 1.*0.5"),
        (lambda: BackoffStrategy.polynomial(1, power=-1), "power must be >= 0.*-1"),
        (lambda: BackoffStrategy.constant(1).with_max(-1), "max must not be negative"),
        (lambda: BackoffStrategy.constant(1).with_min(-2), "min must not be negative"),
        (lambda: Jitter.relative(1.5), "fraction must be between 0 and 1.*1.5"),
        (lambda: Jitter.relative(-0.1), "fraction must be between 0 and 1.*-0.1"),
        (lambda: Jitter.relative(math.nan), "fraction must be a finite number"),
        (lambda: Jitter.absolute(-3), "spread must not be negative, got -3"),
        (lambda: BackoffStrategy.constant(math.inf), "delay must be a finite number"),
        (lambda: BackoffStrategy.constant(1e300), "delay is too large"),
        (lambda: BackoffStrategy.exponential(1, factor=math.nan), "factor must be a finite number"),
    ],
)
def test_bad_values_raise_value_error_naming_them(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BackoffStrategy.constant("5"), "delay must be a timedelta or a number"),  # type: ignore[arg-type]
        (lambda: BackoffStrategy.constant(True), "got True"),
        (lambda: BackoffStrategy.exponential(1, factor="2"), "factor must be a number"),  # type: ignore[arg-type]
        (lambda: BackoffStrategy.polynomial(1, power=None), "power must be a number"),  # type: ignore[arg-type]
        (lambda: BackoffStrategy.constant(1).with_jitter(0.1), "jitter must be"),  # type: ignore[arg-type]
        (lambda: BackoffStrategy.constant(1).backoff(1.5), "attempt must be an int"),  # type: ignore[arg-type]
    ],
)
def test_bad_types_raise_type_error_naming_them(build: Callable[[], object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        build()


def test_the_abstract_strategy_cannot_be_instantiated() -> None:
    with pytest.raises(TypeError):
        BackoffStrategy()  # type: ignore[abstract]


# -- to_timedelta -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=2), timedelta(minutes=2)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        (0, timedelta(0)),
    ],
)
def test_to_timedelta_converts(value: timedelta | float, expected: timedelta) -> None:
    assert to_timedelta(value, name="poll_interval") == expected


@pytest.mark.parametrize("value", ["1", None, True, False, [1]])
def test_to_timedelta_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError, match=r"^poll_interval must be a timedelta or a number"):
        to_timedelta(value, name="poll_interval")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.001, timedelta(seconds=-1), math.inf, math.nan])
def test_to_timedelta_rejects_negative_and_non_finite(value: timedelta | float) -> None:
    with pytest.raises(ValueError, match=r"^poll_interval must"):
        to_timedelta(value, name="poll_interval")
