"""The project is wired up: the app loads, checks pass, models match migrations."""

from __future__ import annotations

import os

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection


def test_app_is_installed() -> None:
    config = apps.get_app_config("django_rexecutor")
    assert config.name == "django_rexecutor"


@pytest.mark.django_db  # Django 6.1's system checks query every database
def test_system_checks_pass() -> None:
    # Raises SystemCheckError on any error-level message.
    call_command("check", fail_level="ERROR")


def test_suite_runs_on_the_database_it_was_asked_for() -> None:
    # CI runs the suite three times; a settings mistake must not silently run all on SQLite.
    url = os.environ.get("DATABASE_URL", "")
    expected = "mysql" if url.startswith("mysql:") else "postgresql" if url else "sqlite"
    assert connection.vendor == expected


@pytest.mark.django_db
def test_models_and_migrations_are_in_sync() -> None:
    # Exits with status 1 when a model change has no migration.
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)
