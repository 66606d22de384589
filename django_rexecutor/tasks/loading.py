"""Finding the ``Task`` a job names, without running arbitrary code named by a payload.

A job stores the dotted path of its task, and a payload is data: it must never choose what a
worker imports. So a path is resolved only if it is *registered* — a ``RexecutorTaskBackend``
validated that task when ``@task`` created it, i.e. its module was already imported by this
process (installed apps' ``tasks.py`` are imported at start-up) — or if its module is listed in
the backend's ``allowed_modules``, which only then is imported. The object found must be a
Django ``Task`` whose backend, like the job's, is a ``RexecutorTaskBackend``. Anything else
raises ``TaskNotAllowed`` before any import."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from django.tasks import Task
from django.utils.module_loading import autodiscover_modules

from .configured import rexecutor_backend
from .exceptions import TaskNotAllowed

if TYPE_CHECKING:
    from types import ModuleType

#: The module name Django's convention gives task modules; imported in every installed app.
TASKS_MODULE = "tasks"

# Paths (``Task.module_path``) of the tasks our backends have validated in this process. Only
# ever added to, from import-time ``@task`` calls: a set's ``add`` needs no lock.
_registered: set[str] = set()


def register_task(task: Task) -> None:
    """Record ``task`` as runnable by its path (called when one of our backends validates it,
    which ``@task`` does as it creates the task)."""
    _registered.add(task.module_path)


def discover_tasks() -> None:
    """Import the ``tasks`` module of every installed app, so that its tasks are registered
    (like the admin does with ``admin.py``)."""
    autodiscover_modules(TASKS_MODULE)


def module_is_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def resolve_task(path: str, alias: str) -> Task:
    """The ``Task`` at ``path``, bound to backend ``alias``. ``ImportError`` if an allowed
    module cannot be imported (e.g. a worker running older code); ``TaskNotAllowed``
    otherwise."""
    backend = rexecutor_backend(alias)
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute.isidentifier():
        raise TaskNotAllowed(f"{path!r} is not the dotted path of a module-level task.")
    module = _registered_module(path, module_name)
    if module is None:
        if not module_is_allowed(module_name, backend.allowed_modules):
            raise TaskNotAllowed(
                f"{path!r} is not a registered task and {module_name!r} is not in "
                f"TASKS[{alias!r}]['OPTIONS']['allowed_modules'], so it was not imported. "
                f"Define the task in an installed app's {TASKS_MODULE}.py (or in a module that "
                f"one imports), or add {module_name!r} to allowed_modules."
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


def _registered_module(path: str, module_name: str) -> ModuleType | None:
    """The (already imported) module of a registered task path, else ``None``."""
    if path not in _registered:
        return None
    # A registered task's module was being imported when @task ran, so it is here (unless
    # something removed it from sys.modules since).
    return sys.modules.get(module_name)
