"""Typed, lazily read access to the ``REXECUTOR`` setting.

Every property reads ``django.conf.settings`` when it is used, so ``override_settings`` works
in tests. Defaults live here and nowhere else (the docs' settings table mirrors ``DEFAULTS``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import connections
from django.utils.module_loading import import_string

from .backoff import to_timedelta

DEFAULTS: dict[str, Any] = {
    "BACKEND": "django_rexecutor.DjangoBackend",
    "DATABASE": "default",
    "CONCURRENCY": 10,
    # Most jobs a worker process claims ahead of its free slots (None: 4 x its concurrency;
    # 0: claim only for free slots). See docs/worker.md, "Claiming ahead".
    "PREFETCH": None,
    "POLL_INTERVAL": None,  # None: the database engine's (1 s PostgreSQL, 0.5 s MariaDB, 0.2 s SQLite)
    "HEARTBEAT_INTERVAL": 5,
    "RESCUE_AFTER": 30,
    "SHUTDOWN_TIMEOUT": 30,
    "CANCEL_GRACE": 5,
    "CRON": [],
    "PRUNER": None,
    # Bytes of JSON each of a new job's data, metadata and tags may take (None: no limit). Far
    # below PostgreSQL's jsonb limit (256 MB of binary jsonb, which can be several times its
    # text) and SQLite's 1 GB, so a job that passes is never refused by the database.
    "MAX_PAYLOAD_BYTES": 16 * 1024 * 1024,
    # Dotted paths of middleware around every attempt, outermost first (see middleware.py).
    "MIDDLEWARE": [],
    # A secret the Prometheus view also accepts as "Authorization: Bearer <token>" (None: staff
    # sessions only).
    "METRICS_TOKEN": None,
    # Executor name -> {"global_concurrency", "rate_limit", "partition_by"}: overrides the
    # executor's class attributes (see ``limits.py``).
    "LIMITS": {},
}


class Settings:
    """The effective configuration; use the module-level ``rexecutor_settings``."""

    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(django_settings, "REXECUTOR", None) or {}
        return value if isinstance(value, dict) else {}

    def get(self, key: str) -> Any:
        return self.raw.get(key, DEFAULTS[key])

    @property
    def BACKEND(self) -> str:
        return str(self.get("BACKEND"))

    @property
    def DATABASE(self) -> str:
        return str(self.get("DATABASE"))

    @property
    def CONCURRENCY(self) -> int:
        return int(self.get("CONCURRENCY"))

    @property
    def PREFETCH(self) -> int | None:
        value = self.get("PREFETCH")
        return None if value is None else int(value)

    @property
    def POLL_INTERVAL(self) -> timedelta:
        value = self.get("POLL_INTERVAL")
        if value is None:
            from .backends.django.engines import ENGINES

            path = ENGINES.get(connections[self.DATABASE].vendor)
            value = import_string(path).default_poll_interval if path else 1.0
        return to_timedelta(value, name='REXECUTOR["POLL_INTERVAL"]')

    @property
    def HEARTBEAT_INTERVAL(self) -> timedelta:
        return to_timedelta(self.get("HEARTBEAT_INTERVAL"), name='REXECUTOR["HEARTBEAT_INTERVAL"]')

    @property
    def RESCUE_AFTER(self) -> timedelta:
        return to_timedelta(self.get("RESCUE_AFTER"), name='REXECUTOR["RESCUE_AFTER"]')

    @property
    def SHUTDOWN_TIMEOUT(self) -> timedelta:
        return to_timedelta(self.get("SHUTDOWN_TIMEOUT"), name='REXECUTOR["SHUTDOWN_TIMEOUT"]')

    @property
    def CANCEL_GRACE(self) -> timedelta:
        """How long a running sync job asked to cancel may take to stop by itself."""
        return to_timedelta(self.get("CANCEL_GRACE"), name='REXECUTOR["CANCEL_GRACE"]')

    @property
    def CRON(self) -> list[dict[str, Any]]:
        return list(self.get("CRON") or [])

    @property
    def MAX_PAYLOAD_BYTES(self) -> int | None:
        value = self.get("MAX_PAYLOAD_BYTES")
        return None if value is None else int(value)

    @property
    def PRUNER(self) -> dict[str, Any] | None:
        value = self.get("PRUNER")
        return dict(value) if value else None

    @property
    def MIDDLEWARE(self) -> list[str]:
        return list(self.get("MIDDLEWARE") or [])

    @property
    def METRICS_TOKEN(self) -> str | None:
        value = self.get("METRICS_TOKEN")
        return None if value is None else str(value)

    @property
    def LIMITS(self) -> dict[str, Any]:
        value = self.get("LIMITS")
        return dict(value) if isinstance(value, dict) else {}


rexecutor_settings = Settings()
