"""Values at and past the limits of what can be stored: each past-the-limit one raises the
library's clear error naming the value, and nothing is stored (``enqueue_many``: nothing at
all), while a value at the limit is stored and read back unchanged."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_rexecutor import EncodeDecodeError, Executor, Job, RexecutorError, UniquenessCriteria
from django_rexecutor.backends.django.engines.mysql import (
    MARIADB_MAX_JSON_DEPTH,
    MYSQL_MAX_JSON_DEPTH,
)
from django_rexecutor.conf import DEFAULTS
from django_rexecutor.encoding import MAX_DEPTH
from django_rexecutor.exceptions import PayloadTooLarge
from django_rexecutor.models import JobRecord

pytestmark = pytest.mark.django_db


class Limits(Executor):
    name = "tests.enqueue_limits.limits"

    def execute(self, job: Job) -> None:
        return None


@pytest.fixture
def nothing_stored(db: None) -> Iterator[None]:
    """Asserts at teardown that no job was stored."""
    yield
    assert not JobRecord.objects.filter(executor=Limits.name).exists()


def _nested(depth: int) -> Any:
    """A value of ``depth`` levels of lists and objects."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def _assert_rejected(value: object, match: str) -> None:
    for field in ("data", "metadata"):
        options: dict[str, Any] = {field: value}
        with pytest.raises(EncodeDecodeError, match=match) as info:
            Limits.enqueue(**options)
        assert isinstance(info.value, RexecutorError) and field in str(info.value)
    with pytest.raises(EncodeDecodeError, match=match):
        Limits.enqueue_many([{"data": 1}, {"data": 2}, {"data": value}])
    unique = UniquenessCriteria.by_key("limits")
    with pytest.raises(EncodeDecodeError, match=match):
        Limits.enqueue_many([Limits.builder().unique(unique), {"data": value}])
    with pytest.raises(EncodeDecodeError, match=match):
        UniquenessCriteria.by_key(value)


def test_json_nested_past_the_recursion_limit_is_rejected(nothing_stored: None) -> None:
    deep = _nested(sys.getrecursionlimit() + 10)
    _assert_rejected(deep, f"nested more than {MAX_DEPTH}")
    # A self-referencing value would recurse forever.
    loop: list[Any] = []
    loop.append(loop)
    _assert_rejected(loop, "nested more than")


def test_json_one_level_past_the_limit_is_rejected(nothing_stored: None) -> None:
    _assert_rejected(_nested(MAX_DEPTH + 1), f"nested more than {MAX_DEPTH}")


def stored_depth() -> int:
    """The deepest JSON the test database stores: MAX_DEPTH, or the server's lower limit."""
    if connection.vendor == "mysql":
        return MARIADB_MAX_JSON_DEPTH if connection.mysql_is_mariadb else MYSQL_MAX_JSON_DEPTH
    return MAX_DEPTH


def test_json_nested_to_the_limit_is_stored_and_read_back() -> None:
    value = _nested(stored_depth())
    job_id = Limits.enqueue(value, metadata=value)
    job = Limits.get_job(job_id)
    assert (job.data, job.metadata) == (value, value)


def test_an_int_beyond_pythons_digit_limit_is_rejected(nothing_stored: None) -> None:
    digits = sys.get_int_max_str_digits()
    _assert_rejected(10**digits, f"int of more than {digits} digits")
    _assert_rejected({"n": [-(10**digits)]}, "Store it as a string")


def test_an_int_with_as_many_digits_as_python_writes_is_stored_and_read_back() -> None:
    largest = 10 ** sys.get_int_max_str_digits() - 1
    job_id = Limits.enqueue({"n": largest, "m": -largest})
    assert Limits.get_job(job_id).data == {"n": largest, "m": -largest}


def test_a_window_longer_than_the_calendar_is_rejected() -> None:
    with pytest.raises(ValueError, match="leave out within"):
        UniquenessCriteria.within(timedelta.max)
    with pytest.raises(ValueError, match="leave out within"):
        UniquenessCriteria.by_key(1).and_within(timedelta.max)


def test_a_window_reaching_past_the_end_of_the_calendar_still_matches() -> None:
    rule = UniquenessCriteria.by_key("far").within(timedelta(days=3_000_000))
    first = Limits.enqueue(unique=rule)
    again = Limits.enqueue(unique=rule, schedule_in=timedelta(days=365))
    assert (again, again.inserted) == (first, False)


def test_a_delay_past_the_end_of_the_calendar_is_rejected(nothing_stored: None) -> None:
    with pytest.raises(ValueError, match="schedule_in"):
        Limits.enqueue(schedule_in=timedelta.max)
    with pytest.raises(ValueError, match="schedule_in"):
        Limits.builder().schedule_in(timedelta(days=9999 * 366))


def test_the_callers_transaction_stays_usable_after_a_rejected_value() -> None:
    with transaction.atomic():
        kept = Limits.enqueue({"n": 1})
        with pytest.raises(EncodeDecodeError):
            Limits.enqueue(_nested(MAX_DEPTH + 1))
        assert Limits.get_job(kept).scheduled_at <= timezone.now()
    assert list(JobRecord.objects.filter(executor=Limits.name).values_list("pk", flat=True)) == [
        kept
    ]


def test_a_payload_over_the_default_limit_is_refused(nothing_stored: None) -> None:
    limit = DEFAULTS["MAX_PAYLOAD_BYTES"]
    huge = "x" * limit  # its JSON text has two quotes more
    with pytest.raises(PayloadTooLarge, match=f"data is {limit + 2} bytes of JSON") as info:
        Limits.enqueue(huge)
    assert isinstance(info.value, EncodeDecodeError)
    assert "MAX_PAYLOAD_BYTES" in str(info.value)
    with pytest.raises(PayloadTooLarge):
        Limits.enqueue_many([{"data": 1}, {"metadata": {"blob": huge}}])


@pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB/MySQL store less deep JSON")
def test_json_deeper_than_the_server_stores_is_rejected_naming_the_column(
    nothing_stored: None,
) -> None:
    depth = stored_depth()
    with pytest.raises(EncodeDecodeError, match=f"metadata is nested {depth + 1} .* {depth} deep"):
        Limits.enqueue({"a": 1}, metadata=_nested(depth + 1))
    with pytest.raises(EncodeDecodeError, match=f"data is nested {depth + 1}"):
        Limits.enqueue_many([{"data": 1}, {"data": _nested(depth + 1)}])


@pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB/MySQL store less deep JSON")
def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    depth = stored_depth()
    job_id = Limits.enqueue({"s": "[" * (depth + 5)})
    assert Limits.get_job(job_id).data == {"s": "[" * (depth + 5)}
