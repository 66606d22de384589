"""Settings of worker subprocesses started by the cron and pruner tests.

The test project's settings, plus the executors of ``tests.cron_testapp`` and a cron entry
firing every second (6 fields: the leading one is seconds). ``REXECUTOR_TEST_CRON=0`` leaves
cron out (the pruner test's worker)."""

from __future__ import annotations

import os

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS, REXECUTOR

INSTALLED_APPS = [*INSTALLED_APPS, "tests.cron_testapp"]

REXECUTOR = {**REXECUTOR, "POLL_INTERVAL": 0.2}
if os.environ.get("REXECUTOR_TEST_CRON", "1") == "1":
    REXECUTOR["CRON"] = [
        {"name": "every-second", "executor": "cron_test.tick", "schedule": "* * * * * *"}
    ]
