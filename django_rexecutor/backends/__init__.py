"""Backends: where jobs live. ``get_backend()`` returns the one configured in
``REXECUTOR["BACKEND"]`` (or one installed for a test with ``use_backend``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..exceptions import ConfigurationError
from .base import Backend

_cache: dict[str, Backend] = {}
_override = threading.local()
_global_override: list[Backend] = []


def get_backend(alias: str | None = None) -> Backend:
    """The backend the class-level API and the worker use; ``alias`` binds a database
    backend to another database."""
    stack = getattr(_override, "stack", None) or _global_override
    if stack:
        backend = stack[-1]
    else:
        from ..conf import rexecutor_settings

        path = rexecutor_settings.BACKEND
        backend = _cache.get(path) or _cache.setdefault(path, _load(path))
    return backend.using(alias) if alias else backend


def _load(path: str) -> Backend:
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(
            f'REXECUTOR["BACKEND"] = {path!r} cannot be imported: {exc}'
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigurationError(
            f'REXECUTOR["BACKEND"] = {path!r} is not a django_rexecutor Backend subclass.'
        )
    return cls()


def for_database(alias: str) -> Backend:
    """The backend owning the job rows of Django database ``alias`` (what the admin shows and
    changes): the configured backend bound to ``alias`` when it keeps its jobs in Django's
    databases, else the built-in Django backend on ``alias`` (e.g. while a test installs an
    in-memory backend)."""
    backend = get_backend()
    if backend.database is not None:
        return backend.using(alias)
    from .django import DjangoBackend

    return DjangoBackend(alias)


def resolve_backend(backend: Backend | None = None, using: str | None = None) -> Backend:
    """``backend`` if given (bound to ``using``), else the configured one."""
    if backend is None:
        return get_backend(using)
    return backend.using(using) if using else backend


@contextmanager
def use_backend(backend: Backend) -> Iterator[Backend]:
    """Make ``backend`` the configured one inside the block, for every thread."""
    _global_override.append(backend)
    try:
        yield backend
    finally:
        _global_override.remove(backend)


def _reset(**kwargs: object) -> None:
    if kwargs.get("setting") in ("REXECUTOR", "DATABASES"):
        _cache.clear()


setting_changed.connect(_reset)

__all__ = ["Backend", "for_database", "get_backend", "resolve_backend", "use_backend"]
