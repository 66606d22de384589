"""CPU accounting from ``/proc`` (Linux) for the benchmark's drains.

* the machine's busy share (first line of ``/proc/stat``);
* the CPU of a process tree (a worker, its supervisor's children and their threads): the
  ``utime + stime`` of every live process in it, from ``/proc/<pid>/stat``;
* the CPU of the PostgreSQL backends serving one database (their ``ps`` title,
  ``postgres: [<cluster>:] <user> <database> <client> <state>``, names it).

A process that exits between two samples takes its CPU with it, so sample trees whose
processes live across the interval (workers started idle, connections opened first)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from the first line of ``/proc/stat``."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, all its threads, so far (0 if it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        pending.extend(children(current))
    return pids


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to ``database`` (on this host)."""
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # "postgres: [<cluster name>:] <user> <database> <client> <state>"
        words = title.split()
        if words[:1] == ["postgres:"] and database in words[2:4]:
            pids.append(int(entry.name))
    return pids


@dataclass(frozen=True)
class Sample:
    """CPU counters at one moment: of a process tree, the machine, and a database's backends."""

    tree_cpu: float
    machine: tuple[int, int]
    backend_cpu: dict[int, float]

    @classmethod
    def take(cls, root_pid: int, database: str) -> Sample:
        backends = {pid: cpu_seconds(pid) for pid in backend_pids(database)}
        return cls(tree_cpu_seconds(root_pid), machine_ticks(), backends)

    def since(self, before: Sample, seconds: float) -> dict[str, float]:
        """Worker CPU (seconds and % of one core), machine busy %, PostgreSQL backends' CPU %
        (of one core, backends alive at both samples) over ``seconds`` from ``before``."""
        cpu = self.tree_cpu - before.tree_cpu
        busy = self.machine[0] - before.machine[0]
        total = max(1, self.machine[1] - before.machine[1])
        backend = sum(
            self.backend_cpu[pid] - at for pid, at in before.backend_cpu.items()
            if pid in self.backend_cpu
        )  # fmt: skip
        return {
            "worker_cpu_s": round(cpu, 3),
            "worker_cpu_pct_of_core": round(100 * cpu / seconds),
            "machine_busy_pct": round(100 * busy / total),
            "pg_cpu_pct_of_core": round(100 * backend / seconds),
        }
