"""Settings of the worker subprocesses of tests/test_worker_attempts.py: those of
``tests.settings_worker`` plus the executors of ``tests.attempts_testapp``."""

from __future__ import annotations

from tests.settings_worker import *  # noqa: F403
from tests.settings_worker import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.attempts_testapp"]
