"""Helpers for testing code that uses django-rexecutor, and for testing backends.

Names are loaded on first use, so importing this package (the pytest plugin does, at start-up)
touches neither Django's models nor pytest."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backends import use_backend
    from .assertions import assert_enqueued, refute_enqueued
    from .conformance import BackendConformanceTests
    from .drain import drain_jobs

__all__ = [
    "BackendConformanceTests",
    "assert_enqueued",
    "drain_jobs",
    "refute_enqueued",
    "use_backend",
]

_LOCATIONS = {
    "assert_enqueued": ".assertions",
    "refute_enqueued": ".assertions",
    "BackendConformanceTests": ".conformance",
    "drain_jobs": ".drain",
    "use_backend": "..backends",
}


def __getattr__(name: str) -> Any:
    location = _LOCATIONS.get(name)
    if location is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(location, __name__), name)
    globals()[name] = value
    return value
