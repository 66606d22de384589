"""Fixtures shared by the whole suite. Feature-specific fixtures belong in their own modules."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from django.db import connection, connections

REPO_ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = REPO_ROOT / "testproject" / "manage.py"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres_only") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...)")
    if item.get_closest_marker("needs_notifications") and connection.vendor != "postgresql":
        pytest.skip("needs LISTEN/NOTIFY between processes (PostgreSQL)")
    if item.get_closest_marker("server_db") and connection.vendor == "sqlite":
        pytest.skip("needs a database server (DATABASE_URL=postgres://... or mysql://...)")


@pytest.fixture
def manage_py() -> list[str]:
    """The command line prefix that runs this project's manage.py with the current Python."""
    return [sys.executable, str(MANAGE_PY)]


@pytest.fixture
def subprocess_env(django_db_setup: None) -> dict[str, str]:
    """Environment for a child process (e.g. `manage.py rexecutor_worker`) that must use this
    test run's database rather than the development one.

    The child only sees committed rows, so tests using it normally need
    `@pytest.mark.django_db(transaction=True)`.
    """
    db = connections["default"].settings_dict
    env = os.environ.copy()
    env["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if connection.vendor == "sqlite":
        env.pop("DATABASE_URL", None)
        env["REXECUTOR_SQLITE_PATH"] = str(db["NAME"])
    else:
        url = urlsplit(env["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(url._replace(path="/" + quote(str(db["NAME"]))))
    return env


@pytest.fixture(scope="session", autouse=True)
def _close_listeners(django_db_setup: None) -> Iterator[None]:
    """Close this process's LISTEN connections before the test database is dropped (any test
    that waited for jobs on PostgreSQL opened one; PostgreSQL refuses to drop a database with
    open connections)."""
    yield
    from django_rexecutor.notifiers.postgresql import stop_notifiers

    stop_notifiers()


CHAOS_DIR = Path(__file__).resolve().parent / "chaos"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The chaos suite runs only on its own cluster (``make chaos``), never in ``make test``."""
    if collection_path == CHAOS_DIR and not config.pluginmanager.has_plugin("tests.chaos.cluster"):
        return True
    return None
