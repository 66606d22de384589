"""The worker behind ``manage.py rexecutor_worker``: see ``worker.Worker``."""

from __future__ import annotations

from .worker import Worker, default_worker_name, resolve_executors

__all__ = ["Worker", "default_worker_name", "resolve_executors"]
