from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo app: example executors (`jobs.py`) and the `rexecutor_demo` command."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"
