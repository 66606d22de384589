"""System checks, with stable ids (``django_rexecutor.E001`` …) that tests assert on."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from .conf import DEFAULTS

_DURATIONS = ("POLL_INTERVAL", "HEARTBEAT_INTERVAL", "RESCUE_AFTER", "SHUTDOWN_TIMEOUT")
#: Durations for which zero is meaningful (``CANCEL_GRACE = 0``: interrupt at once).
_MAY_BE_ZERO = ("CANCEL_GRACE",)


def register() -> None:
    checks.register(check_settings, "django_rexecutor")
    checks.register(check_database, "django_rexecutor", checks.Tags.database)
    checks.register(check_pgtrigger, "django_rexecutor")
    checks.register(check_enqueue, "django_rexecutor")
    checks.register(check_limits, "django_rexecutor")
    from .plugins.cron import check_cron
    from .plugins.pruner import check_pruner

    checks.register(check_cron, "django_rexecutor")
    checks.register(check_pruner, "django_rexecutor")
    checks.register(check_mysql_client, "django_rexecutor")
    checks.register(check_mysql, "django_rexecutor", checks.Tags.database)
    checks.register(check_observability, "django_rexecutor")


def _error(msg: str, id_: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, id=f"django_rexecutor.{id_}")


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    raw = getattr(settings, "REXECUTOR", {})
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [_error(f"REXECUTOR must be a dict, got {type(raw).__name__}.", "E002")]
    errors: list[Any] = []
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        errors.append(
            _error(
                f"REXECUTOR has unknown key(s) {unknown}.",
                "E002",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            )
        )
    for key in (*_DURATIONS, *_MAY_BE_ZERO):
        value = raw.get(key)
        if value is None:
            continue
        ok = isinstance(value, timedelta) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        )
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        zero_ok = key in _MAY_BE_ZERO
        # Written as "not >" so that NaN fails too.
        if not ok or not (seconds >= 0 if zero_ok else seconds > 0):
            kind = "a number of seconds >= 0" if zero_ok else "a positive number of seconds"
            errors.append(
                _error(f'REXECUTOR["{key}"] must be {kind} or a timedelta, got {value!r}.', "E003")
            )
    errors += _check_heartbeat_within_rescue(raw)
    concurrency = raw.get("CONCURRENCY")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        errors.append(
            _error(f'REXECUTOR["CONCURRENCY"] must be an int >= 1, got {concurrency!r}.', "E004")
        )
    prefetch = raw.get("PREFETCH")
    if prefetch is not None and (
        isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
    ):
        errors.append(
            _error(f'REXECUTOR["PREFETCH"] must be None or an int >= 0, got {prefetch!r}.', "E008")
        )
    database = raw.get("DATABASE", DEFAULTS["DATABASE"])
    if database not in settings.DATABASES:
        errors.append(
            _error(
                f'REXECUTOR["DATABASE"] = {database!r} is not a key of DATABASES.',
                "E005",
                hint=f"Configured aliases: {', '.join(settings.DATABASES)}.",
            )
        )
    backend = raw.get("BACKEND", DEFAULTS["BACKEND"])
    from .backends import _load
    from .exceptions import ConfigurationError

    try:
        _load(str(backend))
    except ConfigurationError as exc:
        errors.append(_error(str(exc), "E006"))
    return errors


def _seconds(value: Any) -> float | None:
    """A duration setting in seconds, ``None`` if it is not a valid one (E003 reports it)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _check_heartbeat_within_rescue(raw: dict[str, Any]) -> list[Any]:
    """E007: a worker that beats no more often than ``RESCUE_AFTER`` looks dead between two
    beats, and its running jobs are rescued (and run twice) while it is alive."""
    interval = _seconds(raw.get("HEARTBEAT_INTERVAL", DEFAULTS["HEARTBEAT_INTERVAL"]))
    rescue_after = _seconds(raw.get("RESCUE_AFTER", DEFAULTS["RESCUE_AFTER"]))
    if interval is None or rescue_after is None or interval <= 0 or rescue_after <= 0:
        return []
    if interval < rescue_after:
        return []
    return [
        _error(
            f'REXECUTOR["HEARTBEAT_INTERVAL"] ({interval:g} s) must be shorter than '
            f'REXECUTOR["RESCUE_AFTER"] ({rescue_after:g} s): a live worker would be taken for '
            "dead between two heartbeats and its running jobs rescued.",
            "E007",
            hint="Keep RESCUE_AFTER at least 3 times HEARTBEAT_INTERVAL (defaults: 5 s and 30 s).",
        )
    ]


def check_database(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kw: Any
) -> list[Any]:
    return []


def check_pgtrigger(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    from .conf import rexecutor_settings

    alias = rexecutor_settings.DATABASE
    if alias not in settings.DATABASES:
        return []
    if _vendor(alias) == "postgresql" and not apps.is_installed("pgtrigger"):
        return [
            _error(
                "django_rexecutor on PostgreSQL needs django-pgtrigger: its trigger wakes "
                "workers as soon as a job is enqueued.",
                "E001",
                hint='Add "pgtrigger" to INSTALLED_APPS.',
            )
        ]
    return []


#: Database vendors whose locking the Django backend's uniqueness guarantee is built on.
def check_enqueue(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """Settings and databases under which enqueue cannot keep its promises."""
    from .backends import _load
    from .backends.django.engines import ENGINES, vendor_list
    from .conf import rexecutor_settings
    from .exceptions import ConfigurationError

    errors: list[Any] = []
    raw = getattr(settings, "REXECUTOR", None)
    if isinstance(raw, dict) and "MAX_PAYLOAD_BYTES" in raw:
        limit = raw["MAX_PAYLOAD_BYTES"]
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            errors.append(
                _error(
                    'REXECUTOR["MAX_PAYLOAD_BYTES"] must be a positive int (bytes) or None, '
                    f"got {limit!r}.",
                    "E031",
                )
            )
    try:
        uses_database = _load(rexecutor_settings.BACKEND).database is not None
    except ConfigurationError:
        uses_database = False  # reported as E006
    alias = rexecutor_settings.DATABASE
    if uses_database and alias in settings.DATABASES:
        vendor = _vendor(alias)
        if vendor is not None and vendor not in ENGINES:
            errors.append(
                _error(
                    f"The job database {alias!r} is {vendor}: the Django backend has an "
                    f"engine (safe claims, uniqueness rules) only for {vendor_list()}.",
                    "E030",
                    hint="Point REXECUTOR['DATABASE'] at an alias of one of those databases.",
                )
            )
    return errors


# -- MariaDB and MySQL ---------------------------------------------------------------------
#: The first versions with ``SELECT … FOR UPDATE SKIP LOCKED``, which the claim is built on.
MIN_MARIADB = (10, 6)
MIN_MYSQL = (8, 0)
_MYSQL_EXTRA = 'pip install "django-rexecutor[mysql]"'


def _vendor(alias: str) -> str | None:
    """The alias's ``connection.vendor``; ``None`` when its driver cannot be loaded
    (``check_mysql_client`` reports the missing MySQL one)."""
    try:
        return str(connections[alias].vendor)
    except ImproperlyConfigured:
        return None


def _is_mysql_alias(alias: str) -> bool:
    engine = str(settings.DATABASES.get(alias, {}).get("ENGINE", ""))
    return engine.endswith(".mysql") or ".mysql." in engine


def missing_mysql_client() -> checks.Error | None:
    """E050: the job database is MariaDB/MySQL but its client library is not installed."""
    from .conf import rexecutor_settings

    alias = rexecutor_settings.DATABASE
    if not _is_mysql_alias(alias) or importlib.util.find_spec("MySQLdb") is not None:
        return None
    return _error(
        f"The job database {alias!r} is MariaDB/MySQL, but its client library "
        "(mysqlclient, the MySQLdb module) is not installed.",
        "E050",
        hint=f"Install the extra: {_MYSQL_EXTRA} (it builds against the MySQL/MariaDB "
        "client headers: default-libmysqlclient-dev and pkg-config on Debian/Ubuntu).",
    )


def check_mysql_client(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """E050 as a system check (for a job database other than the one Django opens at start-up:
    for that one, ``RexecutorConfig`` raises it before Django fails to load the driver)."""
    error = missing_mysql_client()
    return [] if error is None else [error]


def check_mysql(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kw: Any
) -> list[Any]:
    """E051–E053 on the job database, when it is MariaDB/MySQL and the checks may query it
    (``manage.py check --database``, ``migrate``)."""
    from .conf import rexecutor_settings

    alias = rexecutor_settings.DATABASE
    if not databases or alias not in databases or _vendor(alias) != "mysql":
        return []
    connection: Any = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ENGINE FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            ["rexecutor_job"],
        )
        row = cursor.fetchone()
        cursor.execute("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")
        offset = int(cursor.fetchone()[0])
    return mysql_problems(
        alias,
        mariadb=bool(connection.mysql_is_mariadb),
        version=tuple(connection.mysql_version),
        table_engine=row[0] if row else None,
        utc_offset=offset,
    )


def mysql_problems(
    alias: str,
    *,
    mariadb: bool,
    version: tuple[int, ...],
    table_engine: str | None,
    utc_offset: int,
) -> list[Any]:
    """The errors of a MariaDB/MySQL job database: its server ``version``, the storage
    engine of the job table (``None``: not migrated yet) and the session's offset from UTC
    in seconds."""
    errors: list[Any] = []
    name, minimum = ("MariaDB", MIN_MARIADB) if mariadb else ("MySQL", MIN_MYSQL)
    if version[:2] < minimum:
        found = ".".join(str(v) for v in version)
        errors.append(
            _error(
                f"The job database {alias!r} runs {name} {found}, which has no "
                "SELECT … FOR UPDATE SKIP LOCKED: two workers could not claim jobs safely.",
                "E051",
                hint=f"Upgrade to {name} {'.'.join(map(str, minimum))} or newer.",
            )
        )
    if table_engine is not None and table_engine.lower() != "innodb":
        errors.append(
            _error(
                f"The job table of {alias!r} uses the {table_engine} storage engine: claims, "
                "fenced writes and uniqueness rules need InnoDB's transactions and row locks.",
                "E052",
                hint="ALTER TABLE rexecutor_job ENGINE=InnoDB (and the other rexecutor_ "
                "tables), and make InnoDB the server's default_storage_engine.",
            )
        )
    if utc_offset != 0:
        errors.append(
            _error(
                f"The session time zone of {alias!r} is {utc_offset:+d} s from UTC: Django "
                "stores datetimes in UTC, so heartbeats, rescue and due times would be off.",
                "E053",
                hint='Add "init_command": "SET time_zone = \'+00:00\'" to the alias\'s '
                "OPTIONS, or run the server with default_time_zone = '+00:00'.",
            )
        )
    return errors


def check_observability(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """``MIDDLEWARE`` entries that cannot be loaded, and a ``METRICS_TOKEN`` that is not a
    string."""
    from django.core.exceptions import ImproperlyConfigured

    from .middleware import load_factory

    raw = getattr(settings, "REXECUTOR", None)
    if not isinstance(raw, dict):
        return []
    errors: list[Any] = []
    paths = raw.get("MIDDLEWARE") or []
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
        return [
            _error(
                f'REXECUTOR["MIDDLEWARE"] must be a list of dotted paths (strings), got {paths!r}.',
                "E040",
            )
        ]
    for path in paths:
        try:
            load_factory(path)
        except ImproperlyConfigured as exc:
            errors.append(
                _error(
                    str(exc),
                    "E040",
                    hint="Each entry is the dotted path of a middleware factory, e.g. "
                    "'django_rexecutor.contrib.otel.OpenTelemetryMiddleware'.",
                )
            )
    token = raw.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or not token):
        errors.append(
            _error(
                'REXECUTOR["METRICS_TOKEN"] must be a non-empty string or None, '
                f"got {type(token).__name__}.",
                "E041",
            )
        )
    return errors


def check_limits(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """``REXECUTOR["LIMITS"]``: a dict of executor name → dict of known, valid limits."""
    from . import registry
    from .exceptions import ConfigurationError
    from .limits import (
        LIMIT_KEYS,
        check_global_concurrency,
        check_partition_by,
        check_rate_limit,
        setting_name,
    )

    raw = getattr(settings, "REXECUTOR", None)
    if not isinstance(raw, dict) or raw.get("LIMITS") is None:
        return []
    limits = raw["LIMITS"]
    if not isinstance(limits, dict):
        return [
            _error(
                'REXECUTOR["LIMITS"] must be a dict of executor name → limits, '
                f"got {type(limits).__name__}.",
                "E401",
            )
        ]
    known = registry.all_executors()
    checkers = {
        "global_concurrency": ("E403", check_global_concurrency),
        "rate_limit": ("E404", check_rate_limit),
        "partition_by": ("E405", check_partition_by),
    }
    errors: list[Any] = []
    for name, entry in limits.items():
        where = f'REXECUTOR["LIMITS"][{name!r}]'
        if not isinstance(entry, dict):
            errors.append(
                _error(f"{where} must be a dict of limits, got {type(entry).__name__}.", "E401")
            )
            continue
        unknown = sorted(set(entry) - set(LIMIT_KEYS))
        if unknown:
            errors.append(
                _error(
                    f"{where} has unknown key(s) {unknown}.",
                    "E402",
                    hint=f"Known keys: {', '.join(LIMIT_KEYS)}.",
                )
            )
        for key, (id_, check) in checkers.items():
            if key in entry:
                try:
                    check(entry[key], setting_name(str(name), key))
                except ConfigurationError as exc:
                    errors.append(_error(str(exc), id_))
        if name not in known:
            errors.append(
                checks.Warning(
                    f"{where} names no registered executor; it limits nothing.",
                    hint=f"Registered executors: {', '.join(known) or 'none'}.",
                    id="django_rexecutor.W401",
                )
            )
    return errors
