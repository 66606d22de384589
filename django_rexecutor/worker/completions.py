"""The completion writer: a thread of its own, with a database connection of its own, that
acknowledges batches of completed attempts while the worker's main thread claims.

With one connection, the worker's round trips take turns: while the database runs a claim,
nothing acknowledges, and while it runs an acknowledgement, nothing is claimed — the database
and the worker's Python never work at once. The writer takes the batched completions
(``ResultQueue.flush`` hands them over) and writes them on its own connection, so a claim and
an acknowledgement are in flight together. Each write is fenced like any result write, so
their order does not matter. A database error keeps the batch and retries it with a growing
delay; every other outcome is still written by the main thread, one by one."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from ..backends.base import Backend
from .attempts import Outcome
from .connections import DB_ERRORS, drop_connection

logger = logging.getLogger("django_rexecutor.worker")

_FIRST_DELAY = 0.1
_MAX_DELAY = 5.0


class CompletionWriter:
    """Writes submitted batches with ``write`` (which reports them) in a daemon thread."""

    def __init__(self, backend: Backend, write: Callable[[list[Outcome]], None]) -> None:
        self.backend = backend
        self._write = write
        self._pending: deque[Outcome] = deque()
        #: The batch being written (still ours until written).
        self._writing: list[Outcome] = []
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rexecutor-completions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, outcomes: list[Outcome]) -> None:
        with self._changed:
            self._pending.extend(outcomes)
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._pending) + len(self._writing)

    def job_ids(self) -> set[int]:
        """The jobs whose completion is not written yet."""
        with self._changed:
            return {a.job.id for a, _ in (*self._pending, *self._writing)}

    def stop(self, timeout: float) -> list[Outcome]:
        """Write what is pending (one try after a database error), stop the thread; returns
        the outcomes left unwritten, for the caller to write or leave to rescue."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._changed:
            left = [*self._writing, *self._pending]
            self._pending.clear()
            self._writing = []
        return left

    def _run(self) -> None:
        delay = _FIRST_DELAY
        while True:
            with self._changed:
                while not self._pending and not self._stopping:
                    self._changed.wait()
                if not self._pending:
                    break
                self._writing = list(self._pending)
                self._pending.clear()
            try:
                self._write(self._writing)
            except DB_ERRORS as exc:
                logger.warning(
                    "Acknowledging %d completed job(s) failed (%s); retrying in %.1fs",
                    len(self._writing), str(exc).strip() or type(exc).__name__, delay,
                )  # fmt: skip
                drop_connection(self.backend)
                with self._changed:
                    self._pending.extendleft(reversed(self._writing))
                    self._writing = []
                    if self._stopping:
                        break
                    self._changed.wait(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            except Exception:  # the thread must outlive a bug in a report
                logger.exception("Reporting %d completed job(s) failed", len(self._writing))
            delay = _FIRST_DELAY
            with self._changed:
                self._writing = []
        drop_connection(self.backend)
