"""Starting and watching real ``rexecutor_worker`` processes in tests."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from django_rexecutor.models import JobRecord


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


def wait_until(
    condition: Callable[[], object], timeout: float, *workers: WorkerProcess, interval: float = 0.05
) -> float:
    """Poll ``condition`` until true; returns the seconds it took. Fails (with the workers'
    output) on time-out or if a worker exits meanwhile."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{worker.output}")
        time.sleep(interval)
    outputs = "\n".join(w.output for w in workers)
    raise AssertionError(f"condition not met within {timeout}s:\n{outputs}")


def status_of(job_id: int) -> str:
    return JobRecord.objects.values_list("status", flat=True).get(pk=job_id)
