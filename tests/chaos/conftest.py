"""Fixtures of the chaos suite: the run's size, its own cluster, worker fleets, figures.

``CHAOS_SCALE=ci`` (default) runs every scenario bounded, for CI; ``CHAOS_SCALE=full`` runs
the sizes that ``docs/reliability.md`` reports. Each scenario records its figures with the
``figures`` fixture: a line each on the terminal, and appended to the JSON file
``CHAOS_FIGURES`` (default ``artifacts/chaos-<scale>.json``)."""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections

from tests.chaos.cluster import Cluster, get_cluster
from tests.worker_support import WorkerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SCALE = os.environ.get("CHAOS_SCALE", "ci")
if SCALE not in {"ci", "full"}:
    raise pytest.UsageError(f"CHAOS_SCALE must be 'ci' or 'full', got {SCALE!r}.")
FIGURES_FILE = Path(
    os.environ.get("CHAOS_FIGURES") or REPO_ROOT / "artifacts" / f"chaos-{SCALE}.json"
)

_recorded: list[tuple[str, str, Any, str]] = []


def sized(ci: Any, full: Any) -> Any:
    """The value for this run's ``CHAOS_SCALE``."""
    return full if SCALE == "full" else ci


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return get_cluster()


class Figures:
    """Figures of one scenario: printed a line each and appended to ``FIGURES_FILE``."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.values: dict[str, Any] = {}

    def __call__(self, name: str, value: Any, unit: str = "") -> None:
        if isinstance(value, float):
            value = round(value, 3)
        self.values[name] = {"value": value, "unit": unit}
        _recorded.append((self.scenario, name, value, unit))
        print(f"[chaos] {self.scenario}: {name} = {value}{' ' + unit if unit else ''}", flush=True)

    def save(self, outcome: str) -> None:
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {}
        if FIGURES_FILE.exists():
            data = json.loads(FIGURES_FILE.read_text() or "{}")
        data.setdefault("machine", {}).update(
            {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
        data.setdefault("scenarios", {})[self.scenario] = {
            "scale": SCALE,
            "outcome": outcome,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "figures": self.values,
        }
        FIGURES_FILE.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_outcome_key] = report.outcome
    return report


_outcome_key = pytest.StashKey[str]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    recorder = Figures(request.node.name.removeprefix("test_"))
    recorder("scale", SCALE)
    yield recorder
    recorder.save(request.node.stash.get(_outcome_key, "error"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _recorded:
        return
    terminalreporter.section(f"chaos figures ({SCALE}; also in {FIGURES_FILE})")
    for scenario, name, value, unit in _recorded:
        terminalreporter.line(f"{scenario}: {name} = {value}{' ' + unit if unit else ''}")


class Db:
    """Short-lived psycopg connections to the test database, outside Django: they survive
    restarts and terminations of the cluster (each call connects afresh, retrying)."""

    APP = "chaos-monitor"

    def __init__(self, settings: dict[str, Any]) -> None:
        self.kwargs = {
            "dbname": settings["NAME"],
            "user": settings["USER"] or "postgres",
            "host": settings["HOST"],
            "port": settings["PORT"],
            "application_name": self.APP,
            "autocommit": True,
        }

    def rows(self, sql: str, params: Any = None, timeout: float = 120) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(connect_timeout=5, **self.kwargs) as conn:
                    cur = conn.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def value(self, sql: str, params: Any = None) -> Any:
        return self.rows(sql, params)[0][0]

    def counts(self, executor: str | None = None) -> dict[str, int]:
        where = "WHERE executor = %s" if executor else ""
        rows = self.rows(
            f"SELECT status, count(*) FROM rexecutor_job {where} GROUP BY status",
            [executor] if executor else None,
        )
        return dict(rows)

    def terminate_others(self) -> int:
        """``pg_terminate_backend`` on every other connection to the test database."""
        return self.value(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name <> %s",
            [self.APP],
        )


@pytest.fixture
def db(django_db_setup: None) -> Db:
    return Db(connections["default"].settings_dict)


class Fleet:
    """Worker processes of one scenario, by name; every one is stopped at the end."""

    def __init__(
        self, manage_py: list[str], env: dict[str, str], overrides: dict[str, Any]
    ) -> None:
        self.manage_py = manage_py
        self.env = env
        self.overrides = overrides
        self.workers: dict[str, WorkerProcess] = {}
        self.retired: list[WorkerProcess] = []
        self._serial = 0

    def start(
        self, *args: str, overrides: dict[str, Any] | None = None, verbosity: str = "1"
    ) -> str:
        self._serial += 1
        name = f"chaos-{self._serial}"
        self.workers[name] = WorkerProcess(
            self.manage_py,
            self.env,
            "--name", name, "-v", verbosity, *args,
            overrides={**self.overrides, **(overrides or {})},
            persistent_connections=True,
        )  # fmt: skip
        return name

    def owner(self, claimed_by: str | None) -> str | None:
        """The fleet name of a ``claimed_by``: a worker's id is its name (``--name``) plus
        ``@`` and a random part of its own."""
        return (claimed_by or "").rpartition("@")[0] or None

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        worker = self.workers.pop(name)
        worker.signal(signum)
        worker.process.wait(timeout=30)
        self.retired.append(worker)

    def random_name(self) -> str:
        return random.choice(sorted(self.workers))

    def dead(self) -> list[str]:
        return [n for n, w in self.workers.items() if w.process.poll() is not None]

    def output(self) -> str:
        return "\n".join(w.output[-5000:] for w in [*self.retired, *self.workers.values()])

    def stop_all(self, timeout: float = 60) -> dict[str, int]:
        """SIGTERM every worker once it is up (a process still booting Django has no signal
        handler yet); returns the exit codes."""
        deadline = time.monotonic() + 30
        for worker in self.workers.values():
            while "started: executors" not in worker.output and time.monotonic() < deadline:
                if worker.process.poll() is not None:
                    break
                time.sleep(0.1)
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.signal(signal.SIGCONT)
                worker.signal(signal.SIGTERM)
        codes = {}
        for name, worker in self.workers.items():
            try:
                codes[name] = worker.wait(timeout)
            except AssertionError:
                codes[name] = -9
        return codes


@pytest.fixture
def fleet_factory(
    request: pytest.FixtureRequest, manage_py: list[str], subprocess_env: dict[str, str]
) -> Iterator[Callable[..., Fleet]]:
    """Makes fleets; kills what is left of them at the end. With ``CHAOS_LOG_DIR`` set, every
    worker's output is saved there as ``<test>-<worker>.log``."""
    fleets: list[Fleet] = []

    def make(**overrides: Any) -> Fleet:
        fleet = Fleet(manage_py, subprocess_env, overrides)
        fleets.append(fleet)
        return fleet

    yield make
    log_dir = os.environ.get("CHAOS_LOG_DIR")
    for fleet in fleets:
        for worker in fleet.workers.values():
            if worker.process.poll() is None:
                worker.signal(signal.SIGCONT)
                worker.kill()
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            for n, worker in enumerate([*fleet.retired, *fleet.workers.values()]):
                name = worker.args[worker.args.index("--name") + 1]
                path = Path(log_dir) / f"{request.node.name}-{name}-{n}.log"
                path.write_text(worker.output)


def wait_for(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    fleet: Fleet | None = None,
    interval: float = 0.2,
) -> float:
    """Poll ``condition``; returns the seconds it took, fails naming ``what`` on time-out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    tail = fleet.output()[-6000:] if fleet else ""
    raise AssertionError(f"{what}: not within {timeout}s\n{tail}")
