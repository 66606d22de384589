"""One engine per database vendor (see ``base.Engine``), chosen from the connection's vendor.

A new database is a new module here, subclassing ``Engine``, plus its line in ``ENGINES``."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ....exceptions import ConfigurationError
from .base import Engine

#: ``connection.vendor`` → the dotted path of its engine (imported on first use, so a
#: vendor's driver is needed only where it is used).
ENGINES: dict[str, str] = {
    "postgresql": "django_rexecutor.backends.django.engines.postgresql.PostgresEngine",
    "sqlite": "django_rexecutor.backends.django.engines.sqlite.SQLiteEngine",
    "mysql": "django_rexecutor.backends.django.engines.mysql.MySQLEngine",
}

_engines: dict[tuple[str, str], Engine] = {}


def engine_for(connection: Any) -> Engine:
    """The engine of ``connection``'s vendor, bound to its alias."""
    vendor, alias = connection.vendor, connection.alias
    engine = _engines.get((vendor, alias))
    if engine is None:
        path = ENGINES.get(vendor)
        if path is None:
            raise ConfigurationError(
                f"The Django backend has no engine for the database {alias!r}, which is "
                f"{vendor}: it runs on {vendor_list()}. Point "
                "REXECUTOR['DATABASE'] (or the alias given to `using`) at one of those."
            )
        engine = _engines.setdefault((vendor, alias), import_string(path)(alias))
    return engine


def vendor_list() -> str:
    """The vendors that have an engine, for messages: ``"mysql, postgresql and sqlite"``."""
    *rest, last = sorted(ENGINES)
    return f"{', '.join(rest)} and {last}" if rest else last


__all__ = ["ENGINES", "Engine", "engine_for", "vendor_list"]
