"""Settings of worker subprocesses started by the django.tasks loading tests: the worker
tests' settings plus the installed app ``tests.tasks_testapp``."""

from __future__ import annotations

from tests.settings_worker import *  # noqa: F403
from tests.settings_worker import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.tasks_testapp"]
