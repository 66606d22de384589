"""System checks of enqueue: ``MAX_PAYLOAD_BYTES`` (E031) and a job database whose locking
cannot keep uniqueness rules (E030)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.db import connections
from django.test import override_settings

from django_rexecutor.checks import check_enqueue


def _ids(**rexecutor: Any) -> list[str]:
    with override_settings(REXECUTOR=rexecutor):
        return [e.id or "" for e in check_enqueue()]


@pytest.mark.parametrize("value", [None, 1, 1024, 10**9])
def test_valid_payload_limits_pass(value: Any) -> None:
    assert _ids(MAX_PAYLOAD_BYTES=value) == []


@pytest.mark.parametrize("value", [0, -1, 1.5, "16MB", True])
def test_e031_payload_limit_must_be_a_positive_int_or_none(value: Any) -> None:
    with override_settings(REXECUTOR={"MAX_PAYLOAD_BYTES": value}):
        errors = check_enqueue()
    assert [e.id for e in errors] == ["django_rexecutor.E031"]
    assert repr(value) in errors[0].msg


def test_e030_a_job_database_without_the_locking_uniqueness_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _ids() == []
    monkeypatch.setattr(connections["default"], "vendor", "oracle")
    errors = check_enqueue()
    assert [e.id for e in errors] == ["django_rexecutor.E030"]
    assert "'default' is oracle" in errors[0].msg
    # The in-memory backend keeps no jobs in that database.
    assert _ids(BACKEND="django_rexecutor.InMemoryBackend") == []


# Run by tag, the database checks run too (on MariaDB/MySQL they query the server).
@pytest.mark.django_db
def test_the_enqueue_check_is_registered() -> None:
    with override_settings(REXECUTOR={"MAX_PAYLOAD_BYTES": 0}):
        messages = checks.run_checks(tags=["django_rexecutor"])
    assert "django_rexecutor.E031" in [m.id for m in messages]
