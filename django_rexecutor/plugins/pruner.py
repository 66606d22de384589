"""Deletes old jobs as ``REXECUTOR["PRUNER"]`` says, on its own cron schedule.

Every worker may run a ``Pruner``, but one prunes at a time: the run holds the backend's
``try_lock("pruner")`` (on PostgreSQL a session-level advisory lock) and a worker that cannot
take it skips its run; on SQLite the database's single write lock serialises the deletes. The backend
deletes in batches of ``batch_size`` rows, each in its own short transaction, so workers
claiming and finishing jobs are never blocked for long. A rule only ever touches the status it
names: waiting jobs are pruned only by a rule that names their status, running jobs never (a
rule naming ``executing`` is a configuration error). Each DELETE re-checks the rule, so a job
that changed after its batch was selected (rerun and claimed, finished again) is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..backends.base import PRUNABLE_STATUSES, Backend, PruneRule, PruneSpec
from ..status import TERMINAL_STATUSES, JobStatus
from .base import Plugin
from .schedule import (
    CronSchedule,
    InvalidCronExpression,
    NeverFiringCronExpression,
    SettingsProblem,
    UnknownTimeZone,
    as_check_messages,
    raise_for,
    unknown_keys,
)

logger = logging.getLogger("django_rexecutor.pruner")

PRUNER_KEYS = frozenset({"schedule", "timezone", "rules", "batch_size"})
RULE_KEYS = frozenset({"status", "max_age", "max_length", "only", "except"})
DEFAULT_SCHEDULE = "* * * * *"
DEFAULT_BATCH_SIZE = 10_000
#: Each batch passes its ids as query parameters; SQLite builds allow 32,766 at least and
#: PostgreSQL 65,535, so a batch stays below both.
MAX_BATCH_SIZE = 30_000
#: The ``Backend.try_lock`` name that makes one worker at a time prune.
LOCK_NAME = "pruner"


@dataclass(frozen=True)
class PrunerConfig:
    """A validated ``REXECUTOR["PRUNER"]``."""

    schedule: CronSchedule
    spec: PruneSpec


def _duration(value: timedelta) -> str:
    if value.days and not value.seconds and not value.microseconds:
        return f"{value.days} day{'s' if value.days != 1 else ''}"
    return str(value)


def describe_rule(rule: PruneRule) -> str:
    """A one-line summary such as ``complete older than 7 days, except ['billing']``."""
    if rule.max_age is not None:
        text = f"{rule.status.value} older than {_duration(rule.max_age)}"
        if rule.status in TERMINAL_STATUSES:
            text += " (since finished)"
        else:
            text += " (by scheduled_at)"
    else:
        text = f"{rule.status.value} beyond the newest {rule.max_length}"
    if rule.only is not None:
        text += f", only {sorted(rule.only)}"
    if rule.except_ is not None:
        text += f", except {sorted(rule.except_)}"
    return text


def _status(value: object) -> JobStatus | None:
    if isinstance(value, JobStatus):
        return value
    if isinstance(value, str):
        for status in JobStatus:
            if value.strip().lower() in (status.value, status.name.lower()):
                return status
    return None


def _executor_names(value: object) -> frozenset[str] | None:
    if (
        isinstance(value, (list, tuple, set, frozenset))
        and value
        and all(isinstance(name, str) and name for name in value)
    ):
        return frozenset(value)
    return None


def _parse_rule(
    index: int, raw: object, executors: Sequence[str]
) -> tuple[PruneRule | None, list[SettingsProblem]]:
    where = f'REXECUTOR["PRUNER"]["rules"][{index}]'
    if not isinstance(raw, dict):
        return None, [SettingsProblem("E203", f"{where} must be a dict, got {raw!r}.")]
    problems = unknown_keys("E203", where, raw, RULE_KEYS)
    status = _status(raw.get("status"))
    if status is None:
        problems.append(
            SettingsProblem(
                "E203",
                f"{where}['status'] = {raw.get('status')!r} is not a job status.",
                hint=f"One of: {', '.join(s.value for s in JobStatus)}.",
            )
        )
    if status == JobStatus.EXECUTING:
        problems.append(
            SettingsProblem(
                "E207",
                f"{where}['status'] = {raw.get('status')!r}: running jobs are never pruned.",
                hint="A job left executing by a dead worker is rescued (RESCUE_AFTER), then "
                "pruned by the rules of the status it ends in. Prunable statuses: "
                f"{', '.join(s.value for s in PRUNABLE_STATUSES)}.",
            )
        )
    if status == JobStatus.WAITING:
        problems.append(
            SettingsProblem(
                "E207",
                f"{where}['status'] = {raw.get('status')!r}: workflow steps waiting for their "
                "dependencies are never pruned.",
                hint="A finished workflow is pruned by the rules of its steps' final statuses. "
                f"Prunable statuses: {', '.join(s.value for s in PRUNABLE_STATUSES)}.",
            )
        )
    has_age, has_length = "max_age" in raw, "max_length" in raw
    max_age: timedelta | None = None
    max_length: int | None = None
    if has_age == has_length:
        problems.append(
            SettingsProblem("E203", f'{where} needs exactly one of "max_age" and "max_length".')
        )
    elif has_age:
        value = raw["max_age"]
        if isinstance(value, timedelta):
            max_age = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            max_age = timedelta(seconds=value) if value == value else None
        if max_age is None or max_age <= timedelta(0):
            max_age = None
            problems.append(
                SettingsProblem(
                    "E203",
                    f"{where}['max_age'] must be a positive timedelta or number of seconds, "
                    f"got {value!r}.",
                )
            )
    else:
        value = raw["max_length"]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            max_length = value
        else:
            problems.append(
                SettingsProblem(
                    "E203", f"{where}['max_length'] must be an int >= 0, got {value!r}."
                )
            )
    only = except_ = None
    if "only" in raw and "except" in raw:
        problems.append(SettingsProblem("E203", f'{where} takes "only" or "except", not both.'))
    for key in ("only", "except"):
        if key not in raw:
            continue
        names = _executor_names(raw[key])
        if names is None:
            problems.append(
                SettingsProblem(
                    "E203",
                    f"{where}[{key!r}] must be a non-empty list of executor names, "
                    f"got {raw[key]!r}.",
                )
            )
            continue
        missing = sorted(names - set(executors))
        if missing:
            problems.append(
                SettingsProblem(
                    "W201",
                    f"{where}[{key!r}] names executor(s) {missing} that are not registered.",
                    hint="Fine for jobs of removed executors; otherwise check the spelling.",
                )
            )
        if key == "only":
            only = names
        else:
            except_ = names
    if any(not p.id.startswith("W") for p in problems) or status not in PRUNABLE_STATUSES:
        return None, problems
    return (
        PruneRule(status, max_age=max_age, max_length=max_length, only=only, except_=except_),
        problems,
    )


def parse_pruner(raw: object) -> tuple[PrunerConfig | None, list[SettingsProblem]]:
    """The pruner configuration and everything wrong with it (check ids E201 malformed,
    E202 schedule, E203 rule, E204 batch size, E205 time zone, E206 schedule that never
    fires, E207 rule on running jobs, W201 unknown executor)."""
    from ..registry import all_executors

    if not raw:
        return None, []
    if not isinstance(raw, dict):
        return None, [
            SettingsProblem(
                "E201", f'REXECUTOR["PRUNER"] must be a dict, got {type(raw).__name__}.'
            )
        ]
    problems = unknown_keys("E201", 'REXECUTOR["PRUNER"]', raw, PRUNER_KEYS)
    schedule: CronSchedule | None = None
    try:
        schedule = CronSchedule.parse(raw.get("schedule", DEFAULT_SCHEDULE), raw.get("timezone"))
    except UnknownTimeZone as exc:
        problems.append(SettingsProblem("E205", f'REXECUTOR["PRUNER"]: {exc}'))
    except NeverFiringCronExpression as exc:
        problems.append(
            SettingsProblem(
                "E206",
                f'REXECUTOR["PRUNER"]["schedule"]: {exc}',
                hint="The pruner would never run; e.g. '0 3 * * *' prunes daily at 03:00.",
            )
        )
    except InvalidCronExpression as exc:
        problems.append(
            SettingsProblem(
                "E202",
                f'REXECUTOR["PRUNER"]["schedule"]: {exc}',
                hint="Use the cron format of REXECUTOR[\"CRON\"], e.g. '*/15 * * * *'.",
            )
        )
    batch_size = raw.get("batch_size", DEFAULT_BATCH_SIZE)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        problems.append(
            SettingsProblem(
                "E204",
                f'REXECUTOR["PRUNER"]["batch_size"] must be an int from 1 to {MAX_BATCH_SIZE}, '
                f"got {batch_size!r}.",
            )
        )
    rules_raw = raw.get("rules")
    rules: list[PruneRule] = []
    if not isinstance(rules_raw, (list, tuple)) or not rules_raw:
        problems.append(
            SettingsProblem(
                "E201",
                'REXECUTOR["PRUNER"]["rules"] must be a non-empty list of rules.',
                hint='e.g. [{"status": "complete", "max_age": timedelta(days=7)}].',
            )
        )
    else:
        executors = list(all_executors())
        for index, item in enumerate(rules_raw):
            rule, found = _parse_rule(index, item, executors)
            problems.extend(found)
            if rule is not None:
                rules.append(rule)
    if schedule is None or any(not p.id.startswith("W") for p in problems):
        return None, problems
    return PrunerConfig(schedule, PruneSpec(tuple(rules), batch_size=batch_size)), problems


def load_pruner_config() -> PrunerConfig | None:
    """The configured pruner, ``None`` if there is none; ``ConfigurationError`` if invalid."""
    from ..conf import rexecutor_settings

    config, problems = parse_pruner(rexecutor_settings.get("PRUNER"))
    raise_for(problems, 'REXECUTOR["PRUNER"]')
    return config


def check_pruner(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """System check of ``REXECUTOR["PRUNER"]`` (ids ``django_rexecutor.E201``–``E207``,
    ``W201``)."""
    from django.conf import settings

    raw = getattr(settings, "REXECUTOR", None)
    if not isinstance(raw, dict):
        return []
    return as_check_messages(parse_pruner(raw.get("PRUNER"))[1])


class Pruner(Plugin):
    """Runs the prune rules at every tick of its schedule."""

    name = "pruner"

    def __init__(self, backend: Backend, spec: PruneSpec, schedule: CronSchedule) -> None:
        self.backend = backend
        self.spec = spec
        self.schedule = schedule
        self._next: datetime | None = None

    @classmethod
    def from_settings(cls, backend: Backend) -> Pruner | None:
        config = load_pruner_config()
        if config is None:
            return None
        return cls(backend, config.spec, config.schedule)

    def run_pending(self, now: datetime) -> datetime:
        if self._next is None:
            self._next = self.schedule.next_after(now, inclusive=True)
        if self._next <= now:
            self.run_once()
            # After the run (which may take a while), the next tick still in the future.
            self._next = self.schedule.next_after(max(now, timezone.now()))
        return self._next

    def run_once(self) -> list[tuple[PruneRule, int]] | None:
        """Apply every rule now; each rule with how many jobs it deleted, or ``None`` if
        another worker is pruning (the backend's ``try_lock``)."""
        with self.backend.try_lock(LOCK_NAME) as held:
            if not held:
                logger.debug("pruner: another worker is pruning; skipping this run")
                return None
            return self._prune()

    def _prune(self) -> list[tuple[PruneRule, int]]:
        deleted: list[tuple[PruneRule, int]] = []
        for rule in self.spec.rules:
            # One rule at a time, so the log says what each deleted.
            count = self.backend.prune_jobs(PruneSpec((rule,), batch_size=self.spec.batch_size))
            deleted.append((rule, count))
            if count:
                logger.info("pruner: deleted %d jobs: %s", count, describe_rule(rule))
        return deleted

    def dry_run(self) -> list[tuple[PruneRule, int]]:
        """How many jobs each rule would delete now (each rule counted on its own, as if it
        ran first)."""
        return [(rule, self.backend.count_prunable(rule)) for rule in self.spec.rules]
