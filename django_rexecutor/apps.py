from __future__ import annotations

import django
from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RexecutorConfig(AppConfig):
    name = "django_rexecutor"
    verbose_name = _("Background jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: no database access here.
        from . import checks, registry

        checks.register()
        registry.autodiscover()
        if django.VERSION >= (6, 0):
            # One executor per queue of each RexecutorTaskBackend in TASKS (settings only).
            from .tasks.executors import register_task_executors

            register_task_executors()
