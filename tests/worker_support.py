"""Running workers in tests: real ``rexecutor_worker`` processes (``WorkerProcess``, for what
only a process shows: signals, kill -9, restarts, outages) and ``Worker`` objects in a thread of
the test process (``InProcessWorker``, for the worker's logic), both watched the same way."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from django.db import connections

from django_rexecutor.backends.base import Backend
from django_rexecutor.models import JobRecord
from django_rexecutor.worker import Worker


class Watched(Protocol):
    """What ``wait_until`` needs of a worker: its output so far, and whether it ended."""

    @property
    def output(self) -> str: ...

    def exited(self) -> bool: ...


class WorkerProcess:
    """A ``manage.py rexecutor_worker`` subprocess whose output is collected as it comes."""

    def __init__(
        self,
        manage_py: list[str],
        env: dict[str, str],
        *args: str,
        overrides: dict[str, Any] | None = None,
        persistent_connections: bool = False,
        settings: str = "tests.settings_worker",
    ) -> None:
        env = dict(env, DJANGO_SETTINGS_MODULE=settings)
        if persistent_connections:
            env["REXECUTOR_TEST_CONN_MAX_AGE"] = "none"
        env["REXECUTOR_TEST_OVERRIDES"] = json.dumps(overrides or {})
        self.args = ["rexecutor_worker", "--no-cron", "--no-pruner", "-v", "2", *args]
        self.process = subprocess.Popen(
            [*manage_py, *self.args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def wait_for_output(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: text in self.output, timeout, self)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not exit in {timeout}s:\n{self.output}") from None
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_burst(manage_py: list[str], env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """Run ``rexecutor_worker --burst`` to its end; returns its output, asserts exit code 0."""
    worker = WorkerProcess(manage_py, env, "--burst", *args)
    code = worker.wait(timeout)
    assert code == 0, worker.output
    return worker.output


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + "\n")


class InProcessWorker:
    """A ``Worker`` (no cron, no pruner, no signal handlers) running in a thread of the test
    process, its ``django_rexecutor`` log lines collected as a subprocess's output is (at
    ``-v 2``). Use it as a context manager, or end it with ``stop()``/``wait()``.

    With ``DjangoBackend`` the worker's threads use their own database connections, so tests
    need committed rows: ``@pytest.mark.django_db(transaction=True)``."""

    def __init__(self, *executors: str, backend: Backend | None = None, **options: Any) -> None:
        self.worker = Worker(
            list(executors) or None,
            backend=backend,
            cron=False,
            pruner=False,
            handle_signals=False,
            **options,
        )
        self.lines: list[str] = []
        self.code: int | None = None
        self.error: BaseException | None = None
        self._handler = _Lines(self.lines)
        self._logger = logging.getLogger("django_rexecutor")
        self._level = self._logger.level
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.DEBUG)
        self._thread = threading.Thread(target=self._run, name="test-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.code = self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            self.error = exc
        finally:
            connections.close_all()  # the test database cannot be dropped while it is open

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def exited(self) -> bool:
        return not self._thread.is_alive()

    def wait_for_output(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: text in self.output, timeout, self)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the worker to end; its exit code (what raised in it is raised here)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.worker.stop()
            self._thread.join(10)
            self._detach()
            raise AssertionError(f"worker did not exit in {timeout}s:\n{self.output}")
        self._detach()
        if self.error is not None:
            raise self.error
        assert self.code is not None
        return self.code

    def stop(self, timeout: float = 30) -> int:
        """A graceful stop (what SIGTERM does), then ``wait``."""
        self.worker.stop()
        return self.wait(timeout)

    def kill(self) -> None:
        """End the worker if it still runs (a test's clean-up; an in-process worker cannot be
        killed, so it is stopped without waiting for its jobs)."""
        if self._thread.is_alive():
            self.worker.shutdown_timeout = 0
            self.worker.stop()
            self._thread.join(10)
        self._detach()

    def _detach(self) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)

    def __enter__(self) -> InProcessWorker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()


def run_burst_in_process(
    *executors: str, backend: Backend | None = None, timeout: float = 60, **options: Any
) -> InProcessWorker:
    """Run a ``burst`` worker to its end in the test process; asserts exit code 0."""
    worker = InProcessWorker(*executors, backend=backend, burst=True, **options)
    code = worker.wait(timeout)
    assert code == 0, worker.output
    return worker


def wait_until(
    condition: Callable[[], object], timeout: float, *workers: Watched, interval: float = 0.05
) -> float:
    """Poll ``condition`` until true; returns the seconds it took. Fails (with the workers'
    output) on time-out or if a worker exits meanwhile."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        for worker in workers:
            if worker.exited():
                raise AssertionError(f"worker exited early:\n{worker.output}")
        time.sleep(interval)
    outputs = "\n".join(w.output for w in workers)
    raise AssertionError(f"condition not met within {timeout}s:\n{outputs}")


def status_of(job_id: int) -> str:
    return JobRecord.objects.values_list("status", flat=True).get(pk=job_id)


def kill_other_connections() -> int:
    """Kill every other session on the test database (a worker's, say), as a database restart
    or a network cut would; how many were killed."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return len(cursor.fetchall())
        cursor.execute(
            "SELECT id FROM information_schema.PROCESSLIST"
            " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        ids = [row[0] for row in cursor.fetchall()]
        for session in ids:
            cursor.execute(f"KILL {int(session)}")
        return len(ids)


def unreachable_database_url() -> str:
    """A ``DATABASE_URL`` of the test database's kind that nothing answers."""
    from django.db import connection

    if connection.vendor == "mysql":
        return "mysql://root@127.0.0.1:1/nowhere"
    return "postgres://postgres@127.0.0.1:1/nowhere"
