"""The executor registry: names stored in the database are resolved here and only here, so a
job's payload can never name code to import."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.module_loading import autodiscover_modules

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .executor import Executor

_executors: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> None:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(
            f"Executor {cls.__module__}.{cls.__qualname__} needs a `name` class attribute "
            "(a stable, unique string stored with its jobs), or `abstract=True` in its class "
            "statement if it is only a base class."
        )
    if len(name) > 255:
        raise ConfigurationError(f"Executor name {name!r} is longer than 255 characters.")
    known = _executors.get(name)
    if known is not None and _identity(known) != _identity(cls):
        raise ConfigurationError(
            f"Two executors are named {name!r}: {_identity(known)} and {_identity(cls)}. "
            "Executor names are stored with jobs and must be unique; rename one."
        )
    # The same class defined again (a module imported twice, autoreload) replaces itself.
    _executors[name] = cls


def _identity(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def unregister(name: str) -> None:
    _executors.pop(name, None)


def get_executor(name: str) -> type[Executor]:
    try:
        return _executors[name]
    except KeyError:
        known = ", ".join(sorted(_executors)) or "none"
        raise ConfigurationError(
            f"No executor is named {name!r} (registered: {known}). Define it in an installed "
            "app's jobs.py."
        ) from None


def all_executors() -> dict[str, type[Executor]]:
    return dict(sorted(_executors.items()))


def autodiscover() -> None:
    """Import ``jobs.py`` of every installed app, like the admin does with ``admin.py``."""
    autodiscover_modules("jobs")
