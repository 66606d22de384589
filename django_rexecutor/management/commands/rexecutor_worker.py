"""``manage.py rexecutor_worker``: a thin shell around ``django_rexecutor.worker.Worker``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError

from ...exceptions import ConfigurationError
from ...worker import Worker
from ...worker.metrics import PrometheusWorkerMetrics
from ...worker.supervisor import Supervisor

_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


class Command(BaseCommand):
    help = "Run background jobs: claim ready jobs of the registered executors and execute them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--executor",
            action="append",
            default=[],
            metavar="NAME",
            help="Run only this executor (repeatable). Default: every registered executor.",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="NAME",
            help="Do not run this executor (repeatable).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help='Jobs run at once by this process (default: REXECUTOR["CONCURRENCY"], 10).',
        )
        parser.add_argument(
            "--prefetch",
            type=int,
            default=None,
            metavar="N",
            help="Most jobs claimed ahead of free slots while a backlog lasts (default: "
            'REXECUTOR["PREFETCH"], else 4 x --concurrency; 0: none).',
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="On SIGTERM/SIGINT, how long running jobs may finish before they are released "
            '(default: REXECUTOR["SHUTDOWN_TIMEOUT"], 30).',
        )
        parser.add_argument("--burst", action="store_true", help="Run every ready job, then exit.")
        parser.add_argument("--name", default=None, help="Worker identity (default: host:pid).")
        parser.add_argument("--no-cron", action="store_true", help="Do not run the cron scheduler.")
        parser.add_argument("--no-pruner", action="store_true", help="Do not run the pruner.")
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            metavar="N",
            help="Worker processes to run, each with --concurrency slots, under a supervisor "
            "that restarts one that dies and passes signals on (default 1: no supervisor).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            metavar="PORT",
            help="Serve this worker's Prometheus metrics on PORT (with --processes N, child k "
            "on PORT + k - 1; needs the prometheus extra).",
        )
        parser.add_argument(
            "--metrics-addr",
            default="0.0.0.0",
            metavar="ADDRESS",
            help="The address --metrics-port listens on (default: 0.0.0.0).",
        )

    def check(self, *args: Any, **kwargs: Any) -> None:
        """Django's system checks, unless the database is down: on MariaDB/MySQL, Django's
        model checks ask the server its version, and a worker started before its database
        must wait for it (its main loop does, with backoff), not crash at start."""
        try:
            super().check(*args, **kwargs)
        except OperationalError as exc:
            logging.getLogger("django_rexecutor.worker").warning(
                "System checks skipped: the database is unavailable (%s)", exc
            )

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        processes = options["processes"]
        if processes < 1:
            raise CommandError(f"--processes must be at least 1, got {processes}.")
        # Built here even with --processes, so that a bad option fails before any fork.
        worker = self._worker(options)
        if processes == 1:
            code = self._run(worker, options)
        else:
            # A --name labels each child with its number; the default name is the child's own.
            name = options["name"]
            if options["verbosity"] >= 1:
                self.stdout.write(f"django-rexecutor supervisor: {processes} worker processes")
            code = Supervisor(
                lambda number: self._run(
                    self._worker(options, name and f"{name}-{number}", number), options, number
                ),
                processes,
                burst=options["burst"],
            ).run()
        if code:
            sys.exit(code)

    def _worker(self, options: dict[str, Any], name: str | None = None, number: int = 1) -> Worker:
        """The worker of these options; child ``number`` > 1 of a supervisor runs no plugin."""
        try:
            metrics = None if options["metrics_port"] is None else PrometheusWorkerMetrics()
            return Worker(
                options["executor"] or None,
                exclude=options["exclude"],
                concurrency=options["concurrency"],
                prefetch=options["prefetch"],
                shutdown_timeout=options["shutdown_timeout"],
                burst=options["burst"],
                name=name or options["name"],
                cron=not options["no_cron"] and number == 1,
                pruner=not options["no_pruner"] and number == 1,
                metrics=metrics,
            )
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc

    def _run(self, worker: Worker, options: dict[str, Any], number: int = 1) -> int:
        metrics = worker.metrics if isinstance(worker.metrics, PrometheusWorkerMetrics) else None
        if metrics is not None:
            port = options["metrics_port"] + number - 1
            try:
                metrics.serve(port, worker=worker.worker_id, addr=options["metrics_addr"])
            except OSError as exc:  # the port is taken, or the address is not ours
                raise CommandError(f"Cannot serve metrics on port {port}: {exc}") from exc
        verbose = options["verbosity"] >= 1
        if verbose:
            self._banner(worker)
        started = time.monotonic()
        try:
            code = worker.run()
        finally:
            if metrics is not None:
                metrics.stop()
        if verbose:
            self._summary(worker, time.monotonic() - started)
        return code

    def _configure_logging(self, verbosity: int) -> None:
        logger = logging.getLogger("django_rexecutor")
        logger.setLevel(_LEVELS.get(verbosity, logging.DEBUG))
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
            )
            logger.addHandler(handler)

    def _banner(self, worker: Worker) -> None:
        info = worker.describe()
        lines = [f"django-rexecutor worker {info['worker']}"]
        lines.append(f"  executors:   {', '.join(info['executors'])}")
        lines.append(f"  database:    {info['database']} via {info['backend']}")
        lines.append(
            f"  concurrency: {info['concurrency']} (up to {info['prefetch']} claimed ahead)"
            f"   poll: {info['poll_interval']:g}s"
            f"   notifications: {'LISTEN/NOTIFY' if info['notifications'] else 'off (polling)'}"
        )
        lines.append(
            f"  heartbeat:   {info['heartbeat_interval']:g}s   rescue after: "
            f"{info['rescue_after']:g}s   shutdown timeout: {info['shutdown_timeout']:g}s"
            f"   cancel grace: {info['cancel_grace']:g}s"
        )
        mode = "burst (exit when no job is ready)" if info["burst"] else "continuous"
        plugins = [p for p in ("cron", "pruner") if info[p]]
        lines.append(f"  mode:        {mode}   plugins: {', '.join(plugins) or 'none'}")
        self.stdout.write("\n".join(lines))

    def _summary(self, worker: Worker, elapsed: float) -> None:
        stats = worker.stats
        total = sum(n for k, n in stats.items() if k != "released")
        parts = ", ".join(f"{k} {n}" for k, n in sorted(stats.items())) or "no jobs"
        self.stdout.write(
            f"Worker {worker.name} stopped after {elapsed:.1f}s: {total} attempt(s): {parts}"
        )
