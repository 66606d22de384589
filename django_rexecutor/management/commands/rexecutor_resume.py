"""``manage.py rexecutor_resume NAME…`` (or ``--all``): resume paused executors."""

from __future__ import annotations

from ...backends.base import Backend
from .rexecutor_pause import Command as PauseCommand


class Command(PauseCommand):
    help = "Resume paused executors across every worker (their waiting jobs run again)."
    verb = "resume"

    def apply(self, backend: Backend, names: list[str]) -> None:
        backend.resume_executors(names)
