"""Building uniqueness rules: every name starts a rule on the class and extends one on an
instance, so the order of a chain never changes the rule it builds."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta

import pytest

from django_rexecutor import Executor, Job, JobStatus, Replace, UniquenessCriteria
from django_rexecutor.models import JobRecord

HOUR = timedelta(hours=1)
REPLACE = Replace.data()

#: Each step of a rule under its constructor-style and its ``and_*`` name.
CRITERIA_STEPS: dict[str, tuple[str, tuple[object, ...]]] = {
    "key": ("by_key", (42,)),
    "executor": ("by_executor", ()),
    "window": ("within", (HOUR,)),
    "statuses": ("by_statuses", (["scheduled", "retryable"],)),
    "conflict": ("on_conflict", (REPLACE,)),
}
AND_NAMES = {
    "by_key": "and_key",
    "by_executor": "and_executor",
    "within": "and_within",
    "by_statuses": "and_statuses",
    "on_conflict": "on_conflict",
}
EXPECTED = UniquenessCriteria(
    key=42,
    executor=True,
    window=HOUR,
    statuses=frozenset({JobStatus.SCHEDULED, JobStatus.RETRYABLE}),
    on_conflict_replace=REPLACE,
)


def _chain(start: object, steps: Sequence[tuple[str, tuple[object, ...]]]) -> object:
    value = start
    for name, args in steps:
        value = getattr(value, name)(*args)
    return value


@pytest.mark.parametrize("use_and_names", [False, True])
def test_every_order_of_the_steps_builds_the_same_criteria(use_and_names: bool) -> None:
    for order in itertools.permutations(CRITERIA_STEPS.values()):
        steps = [(AND_NAMES[name] if use_and_names else name, args) for name, args in order]
        built = _chain(UniquenessCriteria, steps)
        assert built == EXPECTED, [name for name, _ in steps]


def test_the_chain_of_the_spec_keeps_the_key_and_the_executor() -> None:
    rule = UniquenessCriteria.by_key(42).and_executor().within(HOUR)
    assert (rule.key, rule.executor, rule.window) == (42, True, HOUR)
    assert UniquenessCriteria.within(HOUR).by_key(42).by_executor() == rule
    # The and_* names start a rule too.
    assert UniquenessCriteria.and_key(42).and_executor().and_within(HOUR) == rule


def test_every_order_of_replace_steps_builds_the_same_replace() -> None:
    names = [*Replace.FIELDS]
    expected = Replace(
        fields=frozenset(names), statuses=frozenset({JobStatus.SCHEDULED, JobStatus.RETRYABLE})
    )
    steps: list[tuple[str, tuple[object, ...]]] = [(name, ()) for name in names]
    steps.append(("for_statuses", (["scheduled", "retryable"],)))
    for order in itertools.permutations(steps):
        assert _chain(Replace, list(order)) == expected, [name for name, _ in order]
        mixed = [(f"and_{n}" if i % 2 and n in names else n, a) for i, (n, a) in enumerate(order)]
        assert _chain(Replace, mixed) == expected, [name for name, _ in mixed]


def test_replace_priority_then_data_replaces_both() -> None:
    assert Replace.priority().data().fields == {"priority", "data"}


def test_a_rule_that_opts_out_cannot_be_extended_or_combined() -> None:
    with pytest.raises(TypeError, match="opts out of uniqueness"):
        UniquenessCriteria.none().by_key(1)
    with pytest.raises(TypeError, match="opts out of uniqueness"):
        UniquenessCriteria.none().and_statuses(["scheduled"])
    with pytest.raises(TypeError, match=r"none\(\) cannot extend"):
        UniquenessCriteria.by_key(1).none()
    assert UniquenessCriteria.none().disabled


class Report(Executor):
    name = "tests.uniqueness_builders.report"

    def execute(self, job: Job) -> None:
        return None


@pytest.mark.django_db
def test_rules_with_different_keys_both_insert() -> None:
    """The chain of the spec: a window on its own would swallow the second enqueue."""
    first = Report.enqueue(unique=UniquenessCriteria.by_key(1).and_executor().within(HOUR))
    second = Report.enqueue(unique=UniquenessCriteria.by_key(2).and_executor().within(HOUR))
    again = Report.enqueue(unique=UniquenessCriteria.within(HOUR).by_executor().by_key(2))
    assert first.inserted and second.inserted and first != second
    assert (again, again.inserted) == (second, False)
    assert JobRecord.objects.filter(executor=Report.name).count() == 2
