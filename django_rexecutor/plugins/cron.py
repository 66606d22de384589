"""Periodic jobs declared in ``REXECUTOR["CRON"]``.

Every worker may run a ``CronScheduler``; each tick still yields exactly one job, because the
backend's ``enqueue_cron_job`` records the tick and enqueues its job in one atomic step that only
one scheduler can win (the Django backend: a ``CronTickRecord(name, tick_at)`` row with a unique
constraint, in the job's transaction). Nothing depends on which worker wins, or on clocks
agreeing: the tick time comes from the schedule, not from the clock of the worker that writes it.

A scheduler starts with the first tick at or after the moment it first runs: ticks missed while
no worker was running are not backfilled. A tick that is late by more than ``MISFIRE_GRACE``
(a stalled or suspended process) is skipped too, so a resumed worker does not flood the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import InterfaceError, OperationalError

from ..backends.base import Backend, EnqueuableJob
from ..exceptions import EncodeDecodeError
from ..job import JobId
from .base import Plugin
from .schedule import (
    CronSchedule,
    InvalidCronExpression,
    NeverFiringCronExpression,
    SettingsProblem,
    UnknownTimeZone,
    as_check_messages,
    raise_for,
    resolve_time_zone,
    unknown_keys,
)

logger = logging.getLogger("django_rexecutor.cron")

#: Keys a ``REXECUTOR["CRON"]`` entry may have.
ENTRY_KEYS = frozenset(
    {"name", "executor", "schedule", "timezone", "data", "metadata", "tags", "priority"}
)
#: A tick later than this is skipped rather than run late.
MISFIRE_GRACE = timedelta(minutes=5)
#: Tick rows older than this are deleted; it must stay well above ``MISFIRE_GRACE``, or a
#: late scheduler could write a tick whose row was already cleaned up.
TICK_RETENTION = timedelta(days=1)
#: How long an entry whose job could not be enqueued waits before it tries again.
RETRY_AFTER_ERROR = timedelta(seconds=5)
#: How often a scheduler deletes old tick rows.
CLEANUP_EVERY = timedelta(hours=1)
_NAME_MAX_LENGTH = 255


@dataclass(frozen=True)
class CronEntry:
    """One validated ``REXECUTOR["CRON"]`` entry."""

    name: str
    executor: str
    schedule: CronSchedule
    data: Any = None
    metadata: Any = None
    tags: tuple[str, ...] = ()
    priority: int = 0

    def build_job(self, tick: datetime) -> EnqueuableJob:
        """The job of ``tick``: due at the tick, with the executor's defaults (max_attempts,
        uniqueness) like any other enqueue."""
        from ..registry import get_executor

        builder = (
            get_executor(self.executor)
            .builder()
            .with_data(self.data)
            .with_metadata(self.metadata)
            .with_tags(self.tags)
            .with_priority(self.priority)
            .schedule_at(tick)
        )
        return builder.build()


def default_entry_name(executor: str, schedule: str) -> str:
    return f"{executor} {' '.join(schedule.split())}"


def parse_entries(raw: object) -> tuple[list[CronEntry], list[SettingsProblem]]:
    """The entries of ``REXECUTOR["CRON"]`` and everything wrong with them (check ids
    E101 expression, E102 executor, E103 time zone, E104 duplicate name, E105 malformed,
    E106 expression that never fires)."""
    from ..encoding import to_json_native
    from ..registry import all_executors
    from ..validation import check_priority, check_tags

    if raw is None:
        return [], []
    if not isinstance(raw, (list, tuple)):
        return [], [
            SettingsProblem(
                "E105",
                f'REXECUTOR["CRON"] must be a list of dicts, got {type(raw).__name__}.',
            )
        ]
    executors = all_executors()
    entries: list[CronEntry] = []
    problems: list[SettingsProblem] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = f'REXECUTOR["CRON"][{index}]'
        if not isinstance(item, dict):
            problems.append(SettingsProblem("E105", f"{where} must be a dict, got {item!r}."))
            continue
        found = unknown_keys("E105", where, item, ENTRY_KEYS)
        executor = item.get("executor")
        if not isinstance(executor, str) or not executor:
            found.append(
                SettingsProblem("E105", f'{where} needs "executor": the name of an executor.')
            )
        elif executor not in executors:
            found.append(
                SettingsProblem(
                    "E102",
                    f"{where} names the executor {executor!r}, which is not registered.",
                    hint=f"Registered executors: {', '.join(executors) or 'none'}. Executors "
                    "are found in the jobs.py module of installed apps.",
                )
            )
        expression = item.get("schedule")
        zone_name = item.get("timezone")
        schedule: CronSchedule | None = None
        zone_ok = True
        try:
            resolve_time_zone(zone_name)
        except UnknownTimeZone as exc:
            zone_ok = False
            found.append(SettingsProblem("E103", f"{where}: {exc}"))
        if expression is None:
            found.append(SettingsProblem("E105", f'{where} needs "schedule": a cron expression.'))
        else:
            try:
                schedule = CronSchedule.parse(expression, zone_name if zone_ok else "UTC")
            except NeverFiringCronExpression as exc:
                found.append(
                    SettingsProblem(
                        "E106",
                        f"{where}: {exc}",
                        hint="Check the day-of-month against the month (e.g. '0 0 28 2 *' or "
                        "'0 0 L 2 *' for the last day of February).",
                    )
                )
            except InvalidCronExpression as exc:
                found.append(
                    SettingsProblem(
                        "E101",
                        f"{where}: {exc}",
                        hint="Use 5 fields (minute hour day month weekday), or 6 with a "
                        "leading seconds field, e.g. '0 9 * * 1-5' or '*/10 * * * * *'.",
                    )
                )
        values: dict[str, Any] = {}
        for key in ("data", "metadata"):
            try:
                values[key] = to_json_native(item.get(key), what=f"{where}[{key!r}]")
            except EncodeDecodeError as exc:
                found.append(SettingsProblem("E105", str(exc)))
        try:
            values["tags"] = tuple(check_tags(item.get("tags", ())))
        except (TypeError, ValueError) as exc:
            found.append(SettingsProblem("E105", f"{where}['tags']: {exc}"))
        try:
            values["priority"] = check_priority(item.get("priority", 0))
        except (TypeError, ValueError) as exc:
            found.append(SettingsProblem("E105", f"{where}['priority']: {exc}"))
        name = item.get("name")
        if name is None and isinstance(executor, str) and isinstance(expression, str):
            name = default_entry_name(executor, expression)
        if name is not None and (
            not isinstance(name, str) or not name.strip() or len(name) > _NAME_MAX_LENGTH
        ):
            found.append(
                SettingsProblem(
                    "E105",
                    f"{where}['name'] must be a non-empty string of at most "
                    f"{_NAME_MAX_LENGTH} characters, got {name!r}.",
                )
            )
        elif isinstance(name, str):
            if name in seen:
                found.append(
                    SettingsProblem(
                        "E104",
                        f'{where} and REXECUTOR["CRON"][{seen[name]}] are both named {name!r}.',
                        hint='Give each entry a distinct "name" (by default an entry is named '
                        "after its executor and schedule).",
                    )
                )
            else:
                seen[name] = index
        problems.extend(found)
        if found or schedule is None or not isinstance(name, str):
            continue
        entries.append(
            CronEntry(
                name=name,
                executor=str(executor),
                schedule=schedule,
                data=values["data"],
                metadata=values["metadata"],
                tags=values["tags"],
                priority=values["priority"],
            )
        )
    return entries, problems


def load_entries() -> list[CronEntry]:
    """The configured entries; ``ConfigurationError`` if any is invalid."""
    from ..conf import rexecutor_settings

    entries, problems = parse_entries(rexecutor_settings.get("CRON"))
    raise_for(problems, 'REXECUTOR["CRON"]')
    return entries


def check_cron(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """System check of ``REXECUTOR["CRON"]`` (ids ``django_rexecutor.E101``–``E106``)."""
    from django.conf import settings

    raw = getattr(settings, "REXECUTOR", None)
    if not isinstance(raw, dict):
        return []
    return as_check_messages(parse_entries(raw.get("CRON"))[1])


class CronScheduler(Plugin):
    """Enqueues one job per tick of every configured entry."""

    name = "cron"

    def __init__(self, backend: Backend, entries: Sequence[CronEntry]) -> None:
        self.backend = backend
        self.entries = list(entries)
        self._next: dict[str, datetime] = {}
        #: Entries whose last attempt failed, and when to try them again.
        self._retry_at: dict[str, datetime] = {}
        self._last_cleanup: datetime | None = None

    @classmethod
    def from_settings(cls, backend: Backend) -> CronScheduler | None:
        entries = load_entries()
        return cls(backend, entries) if entries else None

    def next_ticks(self) -> dict[str, datetime]:
        """When each entry next fires (after the first ``run_pending``)."""
        return dict(self._next)

    def run_pending(self, now: datetime) -> datetime:
        """Fire every entry's due ticks. An entry that fails is logged and retried after
        ``RETRY_AFTER_ERROR`` (its tick kept, within ``MISFIRE_GRACE``) without holding up the
        others; a lost connection is re-raised after all entries had their turn, so the
        caller reconnects."""
        lost_connection: Exception | None = None
        for entry in self.entries:
            retry_at = self._retry_at.get(entry.name)
            if retry_at is not None and retry_at > now:
                continue
            try:
                self._run_entry(entry, now)
            except Exception as exc:
                logger.exception(
                    "cron %s: could not enqueue the job of its tick; retrying in %s",
                    entry.name,
                    RETRY_AFTER_ERROR,
                )
                self._retry_at[entry.name] = now + RETRY_AFTER_ERROR
                if isinstance(exc, (OperationalError, InterfaceError)):
                    lost_connection = lost_connection or exc
            else:
                self._retry_at.pop(entry.name, None)
        if lost_connection is not None:
            raise lost_connection
        self._cleanup(now)
        # A failing entry's tick is overdue; it asks to be called at its retry time instead.
        wake = [
            max(t for t in (self._next.get(name), self._retry_at.get(name)) if t is not None)
            for name in {*self._next, *self._retry_at}
        ]
        return min(wake, default=now + CLEANUP_EVERY)

    def _run_entry(self, entry: CronEntry, now: datetime) -> None:
        tick = self._next.get(entry.name)
        if tick is None:
            # The first tick is the one at or after "now": no backfill of earlier ticks.
            tick = entry.schedule.next_after(now, inclusive=True)
        if now - tick > MISFIRE_GRACE:
            logger.warning(
                "cron %s: skipping ticks from %s (more than %s late)",
                entry.name,
                tick.isoformat(),
                MISFIRE_GRACE,
            )
            tick = entry.schedule.next_after(now - MISFIRE_GRACE, inclusive=True)
        self._next[entry.name] = tick
        while tick <= now:
            self.fire(entry, tick)
            # Advance only after the tick is written, so a failure retries it.
            tick = entry.schedule.next_after(tick)
            self._next[entry.name] = tick

    def fire(self, entry: CronEntry, tick: datetime) -> JobId | None:
        """Enqueue the job of ``entry`` at ``tick`` unless another scheduler already did;
        returns the new job's id, or ``None`` if this tick was already taken."""
        from .. import signals
        from ..registry import get_executor

        job = entry.build_job(tick)
        job_id = self.backend.enqueue_cron_job(entry.name, tick, job)
        if job_id is None:
            logger.debug("cron %s: tick %s already enqueued", entry.name, tick.isoformat())
            return None
        logger.info(
            "cron %s: enqueued job %s (%s) for tick %s",
            entry.name,
            int(job_id),
            entry.executor,
            tick.isoformat(),
        )
        signals.job_enqueued.send(sender=get_executor(entry.executor), job_id=job_id, job=job)
        return job_id

    def _cleanup(self, now: datetime) -> None:
        """Delete old tick rows, at most once per ``CLEANUP_EVERY`` per scheduler."""
        if self._last_cleanup is not None and now - self._last_cleanup < CLEANUP_EVERY:
            return
        self._last_cleanup = now
        cutoff = now - TICK_RETENTION
        deleted = self.backend.prune_cron_ticks(cutoff)
        if deleted:
            logger.debug("cron: forgot %d ticks older than %s", deleted, cutoff.isoformat())
