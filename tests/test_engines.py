"""The Django backend picks its engine from the connection's vendor, and says clearly when a
database has none."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connections

from django_rexecutor.backends.django import DjangoBackend
from django_rexecutor.backends.django.engines import ENGINES, engine_for
from django_rexecutor.backends.django.engines.postgresql import PostgresEngine
from django_rexecutor.backends.django.engines.sqlite import SQLiteEngine
from django_rexecutor.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("vendor", "engine_class"), [("postgresql", PostgresEngine), ("sqlite", SQLiteEngine)]
)
def test_each_supported_vendor_gets_its_engine_bound_to_the_alias(
    vendor: str, engine_class: type
) -> None:
    engine = engine_for(SimpleNamespace(vendor=vendor, alias="jobs"))
    assert type(engine) is engine_class
    assert engine.vendor == vendor
    assert engine.alias == "jobs"


def test_every_listed_engine_serves_the_vendor_it_is_listed_for() -> None:
    for vendor in ENGINES:
        assert engine_for(SimpleNamespace(vendor=vendor, alias="default")).vendor == vendor


def test_an_unsupported_vendor_gets_an_error_naming_it_and_the_alias() -> None:
    with pytest.raises(ConfigurationError) as raised:
        engine_for(SimpleNamespace(vendor="oracle", alias="legacy"))
    message = str(raised.value)
    assert "'legacy'" in message
    assert "oracle" in message
    assert "mysql, postgresql and sqlite" in message


def test_the_backend_uses_the_engine_of_its_database() -> None:
    backend = DjangoBackend("default")
    vendor = connections["default"].vendor
    assert backend.engine.vendor == vendor
    assert backend.engine.alias == "default"
    assert backend.supports_notifications is (vendor == "postgresql")


def test_an_unsupported_database_fails_when_used_not_when_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connections["default"], "vendor", "oracle")
    backend = DjangoBackend("default")  # settings are read at start-up: nothing fails yet
    with pytest.raises(ConfigurationError, match="'default', which is oracle"):
        backend.claim_jobs("w", {"some.executor": 1}, 1)
