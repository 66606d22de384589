"""Loading the worker's periodic plugins (cron, pruner) and running them from one thread."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.module_loading import import_string

from ..backends.base import Backend
from ..plugins.base import Plugin
from .connections import drop_connection

logger = logging.getLogger("django_rexecutor.worker")

CRON_PLUGIN = "django_rexecutor.plugins.cron.CronScheduler"
PRUNER_PLUGIN = "django_rexecutor.plugins.pruner.Pruner"
_RETRY_AFTER_ERROR = timedelta(seconds=5)


def load_plugins(backend: Backend, *, cron: bool = True, pruner: bool = True) -> list[Plugin]:
    """The enabled plugins that are configured (``from_settings`` returned one)."""
    paths = [path for path, on in ((CRON_PLUGIN, cron), (PRUNER_PLUGIN, pruner)) if on]
    plugins: list[Plugin] = []
    for path in paths:
        try:
            cls = import_string(path)
        except ImportError as exc:
            logger.warning("Plugin %s is not available (%s); running without it", path, exc)
            continue
        plugin = cls.from_settings(backend)
        if plugin is not None:
            plugins.append(plugin)
    return plugins


class PluginRunner:
    """Calls each plugin's ``run_pending`` when it asked to be called, in a daemon thread."""

    def __init__(self, backend: Backend, plugins: list[Plugin]) -> None:
        self.backend = backend
        self.plugins = plugins
        self._next: dict[int, datetime] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rexecutor-plugins", daemon=True)

    def start(self) -> None:
        if self.plugins:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = timezone.now()
            for index, plugin in enumerate(self.plugins):
                if self._next.get(index, now) > now:
                    continue
                try:
                    self._next[index] = plugin.run_pending(now)
                except Exception:
                    logger.exception("Plugin %s failed; retrying in 5s", plugin.name)
                    drop_connection(self.backend)
                    self._next[index] = now + _RETRY_AFTER_ERROR
            soonest = min(self._next.values(), default=now + timedelta(seconds=1))
            self._stop.wait(min(1.0, max(0.01, (soonest - timezone.now()).total_seconds())))
        drop_connection(self.backend)
