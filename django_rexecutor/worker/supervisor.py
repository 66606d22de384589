"""``rexecutor_worker --processes N``: one command that uses every core.

A worker process runs Python on one core at a time (its threads share the interpreter lock),
so a machine with more cores needs more processes. The supervisor forks ``N`` worker
processes from the configured Django process (settings, executors and options are theirs
by inheritance), and then only watches:

- a child that dies (a crash, ``kill -9``, the OOM killer) is started again, after a delay
  that grows while children keep dying soon after they start;
- SIGTERM/SIGINT are forwarded to every child, which shuts down gracefully as a lone worker
  does (a second signal: the children stop at once); the supervisor exits when all have;
- if the supervisor itself is killed, each child gets SIGTERM from the kernel (Linux's
  parent-death signal), so no worker outlives it unsupervised;
- with ``--burst`` a child that finishes is not replaced; the command ends with the last.

Child ``i`` (from 1) is named ``<name>-<i>``; only child 1 runs the cron scheduler and the
pruner (both are safe to run anywhere, but once is enough). The supervisor holds no database
connection and starts no thread before it forks."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger("django_rexecutor.worker")

#: A child that dies within this many seconds of its start counts as crash-looping: its next
#: start waits longer (doubling up to ``MAX_RESTART_DELAY``).
QUICK_DEATH = 10.0
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
_PR_SET_PDEATHSIG = 1

#: What a child runs: given its number (1…N), returns its exit code.
ChildMain = Callable[[int], int]


@dataclass
class _Child:
    number: int
    pid: int = 0
    started: float = 0.0
    restart_delay: float = FIRST_RESTART_DELAY
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    """Forks ``processes`` children running ``child_main`` and keeps them running."""

    def __init__(self, child_main: ChildMain, processes: int, *, burst: bool = False) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.child_main = child_main
        self.burst = burst
        self.children = [_Child(number) for number in range(1, processes + 1)]
        self._signals = 0
        self._previous: dict[signal.Signals, object] = {}

    def run(self) -> int:
        """Supervise until every child has exited after a stop (or a burst). Returns 1 after a
        second signal (as a lone worker does); else 0 if each child's last exit was clean
        (a child killed by the very signal passed on to it counts as clean: it had not yet
        set up its own handling), else the first child's code (128 + the signal's number
        for a child killed by a signal)."""
        self._close_connections()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        try:
            for child in self.children:
                self._start(child)
            while any(c.pid for c in self.children) or self._restarts_pending():
                self._reap()
                self._restart_due()
                time.sleep(0.1)
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
        if self._signals >= 2:
            return 1
        codes = [self._status(c.exit_codes[-1]) for c in self.children if c.exit_codes]
        return next((code for code in codes if code), 0)

    def _status(self, code: int) -> int:
        if code >= 0:
            return code
        if self._signals and -code in (signal.SIGTERM, signal.SIGINT):
            return 0
        return 128 - code

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c.pid]

    # -- children ----------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        parent = os.getpid()
        # Buffered output must not be written twice, once by each process.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for signum, handler in self._previous.items():
                    signal.signal(signum, handler)  # type: ignore[arg-type]
                _die_with_parent(parent)
                code = self.child_main(child.number)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logger.exception("Worker process %d failed", child.number)
            finally:
                # Never return into the supervisor's stack (nor run its atexit hooks).
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        child.pid, child.started, child.restart_at = pid, time.monotonic(), None
        logger.info("Started worker process %d (pid %d)", child.number, pid)

    def _reap(self) -> None:
        for child in self.children:
            if not child.pid:
                continue
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(child.pid, os.WNOHANG)
                if pid == 0:
                    continue
                self._exited(child, os.waitstatus_to_exitcode(status))

    def _exited(self, child: _Child, code: int) -> None:
        pid, child.pid = child.pid, 0
        child.exit_codes.append(code)
        lived = time.monotonic() - child.started
        if self._signals or (self.burst and code == 0):
            logger.info(
                "Worker process %d (pid %d) exited (%s)", child.number, pid, _describe(code)
            )
            return
        if lived < QUICK_DEATH:
            child.restart_delay = min(MAX_RESTART_DELAY, child.restart_delay * 2)
        else:
            child.restart_delay = FIRST_RESTART_DELAY
        child.restart_at = time.monotonic() + child.restart_delay
        logger.warning(
            "Worker process %d (pid %d) died (%s) after %.1fs; starting it again in %.1fs",
            child.number,
            pid,
            _describe(code),
            lived,
            child.restart_delay,
        )

    def _restarts_pending(self) -> bool:
        return not self._signals and any(c.restart_at is not None for c in self.children)

    def _restart_due(self) -> None:
        if self._signals:
            return
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now:
                self._start(child)

    # -- signals -----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        logger.warning("Received %s: passing it to %d worker process(es)", name, len(self.pids))
        for child in self.children:
            child.restart_at = None
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    @staticmethod
    def _close_connections() -> None:
        """A forked child must never share the parent's database connections."""
        from django.db import connections

        connections.close_all()


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to send SIGTERM to this process when its parent dies (Linux); if the
    parent is already gone, stop now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(0)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
