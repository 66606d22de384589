"""System checks of a MariaDB/MySQL job database: the client library, the server's version,
the job table's storage engine and the session's time zone."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from django_rexecutor.checks import check_mysql, check_mysql_client, mysql_problems
from tests.conftest import REPO_ROOT

on_mysql = pytest.mark.skipif(
    connection.vendor != "mysql", reason="needs MariaDB/MySQL (DATABASE_URL=mysql://...)"
)


def ids(errors: list[Any]) -> list[str]:
    return [e.id for e in errors]


def problems(**values: Any) -> list[str]:
    defaults: dict[str, Any] = {
        "mariadb": True,
        "version": (10, 11, 6),
        "table_engine": "InnoDB",
        "utc_offset": 0,
    }
    return ids(mysql_problems("default", **{**defaults, **values}))


def test_supported_servers_pass() -> None:
    assert problems() == []
    assert problems(version=(10, 6, 0)) == []
    assert problems(mariadb=False, version=(8, 0, 36)) == []
    assert problems(table_engine=None) == []  # not migrated yet: nothing to say


@pytest.mark.parametrize(
    ("mariadb", "version"), [(True, (10, 5, 25)), (True, (10, 3, 1)), (False, (5, 7, 44))]
)
def test_e041_a_server_without_skip_locked(mariadb: bool, version: tuple[int, ...]) -> None:
    [error] = mysql_problems(
        "default", mariadb=mariadb, version=version, table_engine="InnoDB", utc_offset=0
    )
    assert error.id == "django_rexecutor.E051"
    assert "SKIP LOCKED" in error.msg
    assert ".".join(map(str, version)) in error.msg
    assert ("10.6" if mariadb else "8.0") in error.hint


def test_e042_a_job_table_that_is_not_innodb() -> None:
    [error] = mysql_problems(
        "default", mariadb=True, version=(10, 11), table_engine="MyISAM", utc_offset=0
    )
    assert error.id == "django_rexecutor.E052"
    assert "MyISAM" in error.msg and "InnoDB" in error.hint


def test_e043_a_session_time_zone_other_than_utc() -> None:
    assert problems(utc_offset=3600) == ["django_rexecutor.E053"]
    assert problems(utc_offset=-18000) == ["django_rexecutor.E053"]


def test_e040_a_mysql_database_without_its_client_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.mysql")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "MySQLdb" else real_find_spec(name, *a),
    )
    [error] = check_mysql_client()
    assert error.id == "django_rexecutor.E050"
    assert "mysqlclient" in error.msg
    assert 'pip install "django-rexecutor[mysql]"' in error.hint


def test_no_client_error_for_other_databases_or_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    assert check_mysql_client() == []
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.mysql")
    assert (importlib.util.find_spec("MySQLdb") is not None) == (check_mysql_client() == [])


def test_the_database_checks_run_only_when_asked_to_query() -> None:
    assert check_mysql() == []
    assert check_mysql(databases=["other"]) == []


@on_mysql
@pytest.mark.django_db
def test_the_real_server_passes_and_a_non_utc_session_fails() -> None:
    assert check_mysql(databases=["default"]) == []
    with connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+02:00'")
    try:
        errors = check_mysql(databases=["default"])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
    assert ids(errors) == ["django_rexecutor.E053"]
    assert "+7200 s" in errors[0].msg


def test_start_up_without_the_client_library_names_the_extra(tmp_path) -> None:
    # Django loads the default database's driver while it imports models, and would only say
    # "Did you install mysqlclient?": the app config fails first, naming the extra.
    script = "import sys; sys.modules['MySQLdb'] = None\nimport django\ndjango.setup()\n"
    env = {
        **os.environ,
        "DATABASE_URL": "mysql://root@127.0.0.1:3306/rexecutor",
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "testproject")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "django_rexecutor.E050" in done.stderr
    assert 'pip install "django-rexecutor[mysql]"' in done.stderr
