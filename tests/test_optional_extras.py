"""Without the optional extras installed (simulated here by hiding the packages, and real in
CI's runs on the older Djangos), enabling an integration fails with a message naming the extra
to install."""

from __future__ import annotations

import importlib
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_rexecutor.checks import check_observability


@pytest.fixture
def without(monkeypatch):
    def hide(*packages: str) -> None:
        for name in list(sys.modules):
            if name.split(".")[0] in packages or name.startswith("django_rexecutor.contrib."):
                monkeypatch.delitem(sys.modules, name)
        for package in packages:
            monkeypatch.setitem(sys.modules, package, None)  # makes its import fail

    return hide


def test_the_otel_middleware_without_the_extra_names_it(without) -> None:
    without("opentelemetry")
    with pytest.raises(ImproperlyConfigured, match=r"django-rexecutor\[otel\]"):
        importlib.import_module("django_rexecutor.contrib.otel")
    path = "django_rexecutor.contrib.otel.OpenTelemetryMiddleware"
    with override_settings(REXECUTOR={"MIDDLEWARE": [path]}):
        [error] = check_observability()
    assert error.id == "django_rexecutor.E040"
    assert "pip install 'django-rexecutor[otel]'" in error.msg


def test_the_prometheus_view_without_the_extra_names_it(without) -> None:
    without("prometheus_client")
    with pytest.raises(ImproperlyConfigured, match=r"django-rexecutor\[prometheus\]"):
        importlib.import_module("django_rexecutor.contrib.prometheus")


def test_worker_metrics_without_the_extra_name_it(without) -> None:
    without("prometheus_client")
    with pytest.raises(CommandError, match=r"pip install 'django-rexecutor\[prometheus\]'"):
        call_command("rexecutor_worker", "--burst", "--metrics-port", "0")
