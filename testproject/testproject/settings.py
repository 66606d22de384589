"""Settings of the django-rexecutor test project (demo, tests, benchmarks).

Environment variables:

- ``DATABASE_URL`` — ``postgres://user:password@host:port/name``: use PostgreSQL;
  ``mysql://user:password@host:port/name``: use MariaDB or MySQL. Unset: SQLite.
- ``REXECUTOR_SQLITE_PATH`` — the SQLite file (default ``testproject/db.sqlite3``).
- ``REXECUTOR_TEST_DB_NAME`` — the test database: a database name on PostgreSQL and MariaDB, a file path
  on SQLite. By default every test run gets its own (suffixed with the process id), so that
  several runs on one machine do not destroy each other's database.
- ``REXECUTOR_TEST_DISABLE_SERVER_SIDE_CURSORS`` — ``1``: set ``DISABLE_SERVER_SIDE_CURSORS``
  (for a transaction-pooling PgBouncer in front of PostgreSQL, as the chaos suite runs it).
- ``DJANGO_DEBUG`` — ``1``/``0`` (default ``1``: this is a development project).
- ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS`` (comma-separated).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _env_flag("DJANGO_DEBUG", default=True)
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-rexecutor-testproject-not-for-production"
)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pgtrigger",
    "django_rexecutor",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _postgres_from_url(url: str) -> dict[str, Any]:
    """Turn ``postgres://user:password@host:port/name?option=value`` into a DATABASES entry.

    Parsed here with urllib so that the project needs no extra dependency for it.
    """
    parts = urlsplit(url)
    if parts.scheme == "mysql":
        return _mysql_from_url(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            "DATABASE_URL must start with postgres://, postgresql:// or mysql://, "
            f"got {parts.scheme!r}://"
        )
    config: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Workers hold their own long-lived connections; the web/test side needs no pooling.
        "CONN_MAX_AGE": 0,
        "OPTIONS": dict(parse_qsl(parts.query)),
        "TEST": {
            "NAME": os.environ.get("REXECUTOR_TEST_DB_NAME")
            or f"test_{unquote(parts.path.lstrip('/')) or 'postgres'}_{os.getpid()}"
        },
    }
    return config


def _mysql_from_url(url: str) -> dict[str, Any]:
    """Turn ``mysql://user:password@host:port/name?option=value`` into a DATABASES entry (for
    MariaDB or MySQL)."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/")) or "rexecutor"
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            # utf8mb4: the whole of Unicode (MySQL's "utf8" stops at three bytes per character).
            "charset": "utf8mb4",
            # Django stores datetimes in UTC and the ORM's Now() reads the session's time zone
            # (system check django_rexecutor.E043).
            "init_command": "SET time_zone = '+00:00'",
            # Django would make every connection READ COMMITTED; the suite keeps InnoDB's own
            # default, REPEATABLE READ, because it is the harder case for uniqueness rules and
            # the one a site gets when it sets nothing (Django before 2.0, other clients).
            "isolation_level": "repeatable read",
            **dict(parse_qsl(parts.query)),
        },
        "TEST": {
            "NAME": os.environ.get("REXECUTOR_TEST_DB_NAME") or f"test_{name}_{os.getpid()}",
            # The server's default collation may be case- and accent-insensitive; the suite
            # compares executor names, tags and keys exactly, as PostgreSQL and SQLite do.
            "CHARSET": "utf8mb4",
            "COLLATION": "utf8mb4_bin",
        },
    }


def _sqlite() -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("REXECUTOR_SQLITE_PATH") or BASE_DIR / "db.sqlite3",
        # Several worker processes share one SQLite file. WAL lets readers proceed while one
        # process writes; IMMEDIATE transactions take the write lock at BEGIN, so two workers
        # claiming jobs queue on the lock (up to `timeout` seconds) instead of failing with
        # "database is locked" when a read lock cannot be upgraded. synchronous=NORMAL is safe
        # with WAL and much faster than FULL.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # A file, not an in-memory database: worker subprocesses started by tests must open
        # the same database as the test process.
        "TEST": {
            "NAME": os.environ.get("REXECUTOR_TEST_DB_NAME")
            or str(Path(tempfile.gettempdir()) / f"django_rexecutor_test_{os.getpid()}.sqlite3")
        },
    }


_database_url = os.environ.get("DATABASE_URL", "").strip()
DATABASES = {"default": _postgres_from_url(_database_url) if _database_url else _sqlite()}
if _env_flag("REXECUTOR_TEST_DISABLE_SERVER_SIDE_CURSORS", default=False):
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# django-rexecutor settings (all keys optional; see the reference docs for the defaults).
REXECUTOR: dict[str, Any] = {}

# Django's tasks framework (django.tasks, Django 6+; Django 5.2 ignores it) on our engine: each
# queue is run by the executor django_tasks.<queue> (see docs/tasks.md).
TASKS: dict[str, Any] = {
    "default": {
        "BACKEND": "django_rexecutor.tasks.RexecutorTaskBackend",
        "QUEUES": ["default", "emails"],
        # The test suite's tasks live in tests/test_tasks_defs.py, outside any installed app.
        "OPTIONS": {"allowed_modules": ["test_tasks_defs"]},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        # Propagates too, so pytest's caplog sees the library's records.
        "django_rexecutor": {"handlers": ["console"], "level": "INFO"},
    },
}
