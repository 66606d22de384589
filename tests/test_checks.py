"""System checks (stable ids ``django_rexecutor.E001`` … ``E006``) and the lazily read
``REXECUTOR`` setting they guard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.db import connection
from django.test import override_settings

from django_rexecutor import DjangoBackend, InMemoryBackend
from django_rexecutor.backends import get_backend
from django_rexecutor.checks import check_pgtrigger, check_settings
from django_rexecutor.conf import DEFAULTS, rexecutor_settings


def _ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_the_test_settings_pass() -> None:
    assert check_settings() == []
    assert check_pgtrigger() == []


@pytest.mark.parametrize("value", [None, {}, {"CONCURRENCY": 4, "POLL_INTERVAL": 0.5}])
def test_valid_settings_pass(value: Any) -> None:
    with override_settings(REXECUTOR=value):
        assert check_settings() == []


def test_e001_postgres_without_pgtrigger() -> None:
    without = [app for app in settings.INSTALLED_APPS if app != "pgtrigger"]
    with override_settings(INSTALLED_APPS=without):
        messages = check_pgtrigger()
    if connection.vendor == "postgresql":
        assert _ids(messages) == ["django_rexecutor.E001"]
        assert "pgtrigger" in messages[0].msg and "INSTALLED_APPS" in (messages[0].hint or "")
    else:
        # SQLite has no triggers to install: pgtrigger is optional there.
        assert messages == []


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("fast", "got str"),
        ([("CONCURRENCY", 2)], "got list"),
        ({"CONCURENCY": 2}, "['CONCURENCY']"),
    ],
)
def test_e002_malformed_setting(value: Any, named: str) -> None:
    with override_settings(REXECUTOR=value):
        messages = check_settings()
        assert check_pgtrigger() == []  # must not crash on a malformed value either
    assert _ids(messages) == ["django_rexecutor.E002"]
    assert named in messages[0].msg
    if isinstance(value, dict):
        assert "CONCURRENCY" in (messages[0].hint or "")


@pytest.mark.parametrize(
    "key", ["POLL_INTERVAL", "HEARTBEAT_INTERVAL", "RESCUE_AFTER", "SHUTDOWN_TIMEOUT"]
)
@pytest.mark.parametrize("value", [0, -1, "5", True, timedelta(0), timedelta(seconds=-1)])
def test_e003_durations(key: str, value: Any) -> None:
    with override_settings(REXECUTOR={key: value}):
        messages = check_settings()
    assert _ids(messages) == ["django_rexecutor.E003"]
    assert key in messages[0].msg and repr(value) in messages[0].msg


@pytest.mark.parametrize("value", [-1, "5", True, [1], float("nan"), timedelta(-1)])
def test_e003_a_negative_cancel_grace(value: Any) -> None:
    with override_settings(REXECUTOR={"CANCEL_GRACE": value}):
        messages = check_settings()
    assert _ids(messages) == ["django_rexecutor.E003"]
    assert "CANCEL_GRACE" in messages[0].msg and ">= 0" in messages[0].msg


@pytest.mark.parametrize("value", [0, 0.5, timedelta(0), timedelta(seconds=10)])
def test_a_cancel_grace_of_zero_or_more_is_accepted(value: Any) -> None:
    with override_settings(REXECUTOR={"CANCEL_GRACE": value}):
        assert check_settings() == []
        assert rexecutor_settings.CANCEL_GRACE.total_seconds() >= 0


@pytest.mark.parametrize("value", [timedelta(milliseconds=200), 0.2, 3])
def test_durations_accept_seconds_or_timedeltas(value: Any) -> None:
    with override_settings(REXECUTOR={"HEARTBEAT_INTERVAL": value}):
        assert check_settings() == []
        expected = value if isinstance(value, timedelta) else timedelta(seconds=value)
        assert expected == rexecutor_settings.HEARTBEAT_INTERVAL


@pytest.mark.parametrize(
    "value",
    [
        {"HEARTBEAT_INTERVAL": 30, "RESCUE_AFTER": 30},
        {"HEARTBEAT_INTERVAL": timedelta(minutes=1), "RESCUE_AFTER": 30},
        {"RESCUE_AFTER": 5},  # the default heartbeat is 5 s
        {"HEARTBEAT_INTERVAL": 45},  # the default rescue is after 30 s
    ],
)
def test_e007_heartbeat_interval_not_below_rescue_after(value: dict[str, Any]) -> None:
    with override_settings(REXECUTOR=value):
        messages = check_settings()
    assert _ids(messages) == ["django_rexecutor.E007"]
    assert "HEARTBEAT_INTERVAL" in messages[0].msg and "RESCUE_AFTER" in messages[0].msg
    assert "rescued" in messages[0].msg


@pytest.mark.parametrize(
    "value", [{"HEARTBEAT_INTERVAL": 1, "RESCUE_AFTER": 3}, {"RESCUE_AFTER": 6}]
)
def test_a_heartbeat_interval_below_rescue_after_passes(value: dict[str, Any]) -> None:
    with override_settings(REXECUTOR=value):
        assert check_settings() == []


@pytest.mark.parametrize("value", [0, -2, "10", True, 2.5])
def test_e004_concurrency(value: Any) -> None:
    with override_settings(REXECUTOR={"CONCURRENCY": value}):
        messages = check_settings()
    assert _ids(messages) == ["django_rexecutor.E004"]
    assert repr(value) in messages[0].msg


@pytest.mark.parametrize("value", [-1, "10", True, 2.5])
def test_e008_prefetch(value: Any) -> None:
    with override_settings(REXECUTOR={"PREFETCH": value}):
        messages = check_settings()
    assert _ids(messages) == ["django_rexecutor.E008"]
    assert repr(value) in messages[0].msg


@pytest.mark.parametrize("value", [None, 0, 40])
def test_a_prefetch_of_none_or_a_count_passes(value: Any) -> None:
    with override_settings(REXECUTOR={"PREFETCH": value}):
        assert check_settings() == []


def test_e005_unknown_database_alias() -> None:
    with override_settings(REXECUTOR={"DATABASE": "jobs"}):
        messages = check_settings()
        assert check_pgtrigger() == []
    assert _ids(messages) == ["django_rexecutor.E005"]
    assert "'jobs'" in messages[0].msg and "default" in (messages[0].hint or "")


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("myproject.backends.Missing", "cannot be imported"),
        ("django_rexecutor.Where", "is not a django_rexecutor Backend subclass"),
    ],
)
def test_e006_backend_that_cannot_be_used(path: str, named: str) -> None:
    with override_settings(REXECUTOR={"BACKEND": path}):
        messages = check_settings()
    assert _ids(messages) == ["django_rexecutor.E006"]
    assert path in messages[0].msg and named in messages[0].msg


def test_several_problems_are_all_reported() -> None:
    bad = {"CONCURRENCY": 0, "DATABASE": "nope", "RESCUE_AFTER": -1, "EXTRA": 1}
    with override_settings(REXECUTOR=bad):
        messages = check_settings()
    assert sorted(_ids(messages)) == [
        "django_rexecutor.E002",
        "django_rexecutor.E003",
        "django_rexecutor.E004",
        "django_rexecutor.E005",
    ]
    assert all(m.level == checks.ERROR for m in messages)


# Run by tag, the database checks run too (on MariaDB/MySQL they query the server).
@pytest.mark.django_db
def test_checks_are_registered_with_django() -> None:
    with override_settings(REXECUTOR={"CONCURRENCY": 0}):
        messages = checks.run_checks(tags=["django_rexecutor"])
    assert "django_rexecutor.E004" in _ids(messages)


# -- the setting itself ---------------------------------------------------------------------


def test_defaults() -> None:
    assert DEFAULTS == {
        "BACKEND": "django_rexecutor.DjangoBackend",
        "DATABASE": "default",
        "CONCURRENCY": 10,
        "PREFETCH": None,
        "POLL_INTERVAL": None,
        "HEARTBEAT_INTERVAL": 5,
        "RESCUE_AFTER": 30,
        "SHUTDOWN_TIMEOUT": 30,
        "CANCEL_GRACE": 5,
        "CRON": [],
        "PRUNER": None,
        "MAX_PAYLOAD_BYTES": 16 * 1024 * 1024,
        "MIDDLEWARE": [],
        "METRICS_TOKEN": None,
        "LIMITS": {},
    }
    with override_settings(REXECUTOR={}):
        assert rexecutor_settings.CONCURRENCY == 10
        assert timedelta(seconds=5) == rexecutor_settings.CANCEL_GRACE
        assert timedelta(seconds=30) == rexecutor_settings.RESCUE_AFTER
        expected_poll = {"postgresql": 1.0, "mysql": 0.5, "sqlite": 0.2}[connection.vendor]
        assert timedelta(seconds=expected_poll) == rexecutor_settings.POLL_INTERVAL
        assert (rexecutor_settings.CRON, rexecutor_settings.PRUNER) == ([], None)


def test_the_setting_is_read_lazily() -> None:
    with override_settings(REXECUTOR={"CONCURRENCY": 3, "POLL_INTERVAL": timedelta(seconds=2)}):
        assert rexecutor_settings.CONCURRENCY == 3
        assert timedelta(seconds=2) == rexecutor_settings.POLL_INTERVAL
    assert rexecutor_settings.CONCURRENCY == 10


def test_the_backend_setting_chooses_the_backend() -> None:
    assert isinstance(get_backend(), DjangoBackend)
    with override_settings(REXECUTOR={"BACKEND": "django_rexecutor.InMemoryBackend"}):
        assert isinstance(get_backend(), InMemoryBackend)
        assert get_backend() is get_backend()
    with override_settings(REXECUTOR={"DATABASE": "other"}):
        assert get_backend().alias == "other"  # type: ignore[attr-defined]
    assert isinstance(get_backend(), DjangoBackend)
