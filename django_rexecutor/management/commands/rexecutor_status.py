"""``manage.py rexecutor_status``: the queue's health at a glance, or as JSON, or refreshed;
a health check with thresholds.

Exit codes: 0 healthy (or no threshold given), 1 a threshold (``--max-lag``,
``--max-discarded-last-hour``) is exceeded, 2 a usage error or the store could not be read."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...backends import get_backend
from ...registry import all_executors
from ...snapshot import Snapshot, take_snapshot
from ...status import JobStatus

#: Exit codes, as documented.
HEALTHY, UNHEALTHY, BROKEN = 0, 1, 2


class Command(BaseCommand):
    help = (
        "Show jobs per executor and status, queue lag, failures of the last hour and live "
        "workers. Exit code 1 if a threshold given is exceeded, 2 on a usage or database error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--watch",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Refresh every SECONDS until interrupted (Ctrl-C).",
        )
        parser.add_argument(
            "--max-lag",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Unhealthy (exit 1) if an executor's oldest due job waited longer than this.",
        )
        parser.add_argument(
            "--max-discarded-last-hour",
            type=int,
            default=None,
            metavar="N",
            help="Unhealthy (exit 1) if more than N jobs were discarded in the last hour.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        watch = options["watch"]
        if watch is not None and watch <= 0:
            raise CommandError("--watch takes a positive number of seconds.", returncode=BROKEN)
        for name in ("max_lag", "max_discarded_last_hour"):
            if options[name] is not None and options[name] < 0:
                flag = "--" + name.replace("_", "-")
                raise CommandError(f"{flag} must be >= 0.", returncode=BROKEN)
        code = HEALTHY
        try:
            while True:
                snapshot = self._read()
                problems = self._problems(snapshot, options)
                code = UNHEALTHY if problems else HEALTHY
                if watch is not None and not options["json"]:
                    self.stdout.write("\x1b[2J\x1b[H", ending="")  # clear the terminal
                self._show(snapshot, problems, options["json"])
                if watch is None:
                    break
                self.stdout.flush()
                time.sleep(watch)
        except KeyboardInterrupt:
            pass
        if code:
            sys.exit(code)

    def _read(self) -> Snapshot:
        try:
            return take_snapshot(get_backend(), sorted(all_executors()))
        except Exception as exc:
            raise CommandError(
                f"Cannot read the job store: {type(exc).__name__}: {exc}", returncode=BROKEN
            ) from exc

    @staticmethod
    def _problems(snapshot: Snapshot, options: dict[str, Any]) -> list[str]:
        problems = []
        max_lag = options["max_lag"]
        if max_lag is not None:
            limit = timedelta(seconds=max_lag)
            for name, health in sorted(snapshot.executors.items()):
                if health.lag is not None and health.lag > limit:
                    problems.append(
                        f"{name}: lag {health.lag.total_seconds():.1f}s exceeds {max_lag:g}s"
                    )
        max_discarded = options["max_discarded_last_hour"]
        if max_discarded is not None and snapshot.discarded_last_hour > max_discarded:
            problems.append(
                f"{snapshot.discarded_last_hour} job(s) discarded in the last hour "
                f"exceed {max_discarded}"
            )
        return problems

    def _show(self, snapshot: Snapshot, problems: list[str], as_json: bool) -> None:
        if as_json:
            out = snapshot.as_json()
            out["healthy"] = not problems
            out["problems"] = problems
            self.stdout.write(json.dumps(out, sort_keys=True))
            return
        statuses = [s.value for s in JobStatus]
        header = ["executor", *statuses, "lag", "discarded/h"]
        if snapshot.knows_paused:
            header.append("paused")
        table = [header]
        for name, health in sorted(snapshot.executors.items()):
            cells = [name]
            for status in statuses:
                n = health.counts.get(status, 0)
                cells.append(f"~{n}" if status in snapshot.estimated else str(n))
            cells.append("-" if health.lag is None else f"{health.lag.total_seconds():.1f}s")
            cells.append(str(health.discarded_last_hour))
            if snapshot.knows_paused:
                cells.append("paused" if health.paused else "")
            table.append(cells)
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"Jobs at {snapshot.at:%Y-%m-%d %H:%M:%S %Z}"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
        if snapshot.estimated:
            lines.append("(~: estimated from a sample of a large table)")
        lines.append("")
        lines.append(f"Live workers: {len(snapshot.workers)}")
        for w in snapshot.workers:
            age = (snapshot.at - w.heartbeat_at).total_seconds()
            running = ", ".join(map(str, w.running[:10])) or "-"
            if len(w.running) > 10:
                running += f" (+{len(w.running) - 10})"
            lines.append(
                f"  {w.worker_id} on {w.hostname} pid {w.pid}: heartbeat {age:.1f}s ago, "
                f"running {len(w.running)}/{w.concurrency}: {running}"
            )
        if problems:
            lines.append("")
            lines.append("UNHEALTHY:")
            lines += [f"  {p}" for p in problems]
        self.stdout.write("\n".join(lines))
