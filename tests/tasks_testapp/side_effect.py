"""A module of an installed app that nothing imports at start-up, whose import has a visible
side effect: it creates the file named by ``REXECUTOR_TEST_IMPORT_MARKER``. A job naming its
task must be refused without importing it."""

from __future__ import annotations

import os
from pathlib import Path

from django.tasks import task

_marker = os.environ.get("REXECUTOR_TEST_IMPORT_MARKER")
if _marker:
    Path(_marker).write_text(f"imported by process {os.getpid()}\n")


@task
def launch() -> str:
    return "launched"
