"""Settings of benchmark runs: the test project's, as a production deployment would set them.

``DEBUG`` is off (Django's debug cursor records every query, which no production worker
pays for) and the benchmark app is installed so worker subprocesses register its executors."""

from __future__ import annotations

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "tests.benchmarks"]
