"""The benchmark's Django app: it exists only so that autodiscovery finds ``jobs.py``."""

from __future__ import annotations

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "tests.benchmarks"
    label = "rexecutor_bench"
    verbose_name = "django-rexecutor benchmark"
