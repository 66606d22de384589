"""Which task backends of ``TASKS`` are ours, found without importing ``backend.py``.

``RexecutorTaskBackend`` registers its class here as it is defined, so the modules beneath it
(loading a job's task, the executors that run it, the signals they send) can check that a
backend is one of ours and read its settings, while imports run one way only: ``backend.py``
imports them, never the reverse."""

from __future__ import annotations

from typing import Protocol

from django.tasks import task_backends
from django.tasks.exceptions import InvalidTaskBackend

from .exceptions import TaskNotAllowed
from .options import RetryPolicy


class RexecutorBackend(Protocol):
    """What the modules beneath ``backend.py`` read of a ``RexecutorTaskBackend``."""

    alias: str

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def allowed_modules(self) -> tuple[str, ...]: ...


# The class ``backend.py`` registers: always there before any of our backends can exist, as
# this package's ``__init__`` imports ``backend.py`` first.
_registered: list[type[RexecutorBackend]] = []


def register_backend_class[B: type[RexecutorBackend]](cls: B) -> B:
    """Class decorator: ``cls`` and its subclasses are our task backends."""
    _registered[:] = [cls]
    return cls


def backend_class() -> type[RexecutorBackend]:
    """Our task backend class (``RexecutorTaskBackend``): the sender of the task signals."""
    if not _registered:
        raise RuntimeError("django_rexecutor.tasks.backend has not been imported.")
    return _registered[0]


def is_backend_class(value: object) -> bool:
    """Whether ``value`` (e.g. a ``TASKS[alias]["BACKEND"]`` imported) is our backend class
    or a subclass of it."""
    return isinstance(value, type) and issubclass(value, tuple(_registered))


def rexecutor_backend(alias: str) -> RexecutorBackend:
    """The task backend configured as ``alias``, which must be one of ours."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        raise TaskNotAllowed(f"TASKS has no backend {alias!r}.") from None
    ours = tuple(_registered)
    if not isinstance(backend, ours):
        raise TaskNotAllowed(
            f"TASKS[{alias!r}] is {type(backend).__qualname__}, not a RexecutorTaskBackend."
        )
    return backend
