from __future__ import annotations

from typing import Any

import django
from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _


class RexecutorConfig(AppConfig):
    name = "django_rexecutor"
    verbose_name = _("Background jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def __init__(self, app_name: str, app_module: Any) -> None:
        super().__init__(app_name, app_module)
        # Before any model is imported: Django loads the default database's driver then, and
        # would fail without naming the extra that installs it. Settings only, no database.
        from .checks import missing_mysql_client

        error = missing_mysql_client()
        if error is not None:
            raise ImproperlyConfigured(f"{error.id}: {error.msg} {error.hint}")

    def ready(self) -> None:
        # Wiring only: no database access here.
        from . import checks, registry

        checks.register()
        registry.autodiscover()
        if django.VERSION >= (6, 0):
            # One executor per queue of each RexecutorTaskBackend in TASKS (settings only).
            from .tasks.executors import register_task_executors

            register_task_executors()
