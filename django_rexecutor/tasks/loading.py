"""Finding the ``Task`` a job names, without running arbitrary code named by a payload.

A job stores the dotted path of its task. A worker imports that path only if the module is
already loaded, belongs to an installed app, or is listed in the backend's
``allowed_modules``; and it runs the object only if it is a Django ``Task`` whose backend, like
the job's, is a ``RexecutorTaskBackend``. Anything else raises ``TaskNotAllowed``."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from django.apps import apps
from django.tasks import Task, task_backends
from django.tasks.exceptions import InvalidTaskBackend

from .exceptions import TaskNotAllowed

if TYPE_CHECKING:
    from .backend import RexecutorTaskBackend


def rexecutor_backend(alias: str) -> RexecutorTaskBackend:
    """The task backend configured as ``alias``, which must be one of ours."""
    from .backend import RexecutorTaskBackend

    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        raise TaskNotAllowed(f"TASKS has no backend {alias!r}.") from None
    if not isinstance(backend, RexecutorTaskBackend):
        raise TaskNotAllowed(
            f"TASKS[{alias!r}] is {type(backend).__qualname__}, not a RexecutorTaskBackend."
        )
    return backend


def module_is_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    if module in sys.modules or apps.get_containing_app_config(module) is not None:
        return True
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def resolve_task(path: str, alias: str) -> Task:
    """The ``Task`` at ``path``, bound to backend ``alias``. ``ImportError`` if its module
    cannot be imported (e.g. a worker running older code); ``TaskNotAllowed`` otherwise."""
    backend = rexecutor_backend(alias)
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute.isidentifier():
        raise TaskNotAllowed(f"{path!r} is not the dotted path of a module-level task.")
    if not module_is_allowed(module_name, backend.allowed_modules):
        raise TaskNotAllowed(
            f"Refusing to import {module_name!r} for task {path!r}: it is not part of an "
            f"installed app. Add it to TASKS[{alias!r}]['OPTIONS']['allowed_modules'] if it "
            "really holds tasks."
        )
    module = importlib.import_module(module_name)
    found = getattr(module, attribute, None)
    if not isinstance(found, Task):
        raise TaskNotAllowed(
            f"{path!r} is {type(found).__qualname__}, not a task: decorate it with @task."
        )
    rexecutor_backend(found.backend)
    if found.backend == alias:
        return found
    return found.using(backend=alias)
