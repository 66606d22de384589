"""The seam between the worker and its periodic plugins (cron, pruner).

A worker builds each enabled plugin with ``from_settings`` (``None`` when it is not configured)
and calls ``run_pending`` from one background thread; the return value says when the plugin
next wants to run. Plugins must be safe to run in every worker at once: they coordinate through
the database (unique constraints, advisory locks), never through the worker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from ..backends.base import Backend


class Plugin(ABC):
    name: str = "plugin"

    @classmethod
    @abstractmethod
    def from_settings(cls, backend: Backend) -> Plugin | None:
        """The plugin configured in ``REXECUTOR``, or ``None`` if it is not enabled."""

    @abstractmethod
    def run_pending(self, now: datetime) -> datetime:
        """Do whatever is due at ``now``; return when to be called next."""
