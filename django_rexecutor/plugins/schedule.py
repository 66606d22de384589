"""Cron expressions as the cron scheduler and the pruner accept them, bound to a time zone.

Our format is the classic 5 fields (minute hour day-of-month month day-of-week), or 6 with a
*leading* seconds field (``"*/10 * * * * *"``: every ten seconds), or one of the ``@hourly``
style aliases. croniter does the parsing and the arithmetic; it wants the seconds field *last*,
so a 6-field expression is rotated before it is handed over. Random (``R``) and hashed (``H``)
fields are refused: every worker must compute the same tick times, or ticks could not be
deduplicated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from ..exceptions import ConfigurationError

#: The aliases croniter knows, spelled out so that every expression is plain fields.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_ONE_MICROSECOND = timedelta(microseconds=1)


class InvalidCronExpression(ConfigurationError):
    """A schedule croniter cannot read, or one that is not in our format."""


class NeverFiringCronExpression(InvalidCronExpression):
    """A well-formed schedule that matches no date at all, such as ``0 0 31 2 *``."""


class UnknownTimeZone(ConfigurationError):
    """A time zone name the IANA database (``zoneinfo``) does not know."""


def resolve_time_zone(name: object = None) -> tzinfo:
    """The zone called ``name``, or the project's ``TIME_ZONE`` (UTC if that is unset)."""
    if name is None:
        from django.conf import settings

        name = getattr(settings, "TIME_ZONE", None) or "UTC"
    if not isinstance(name, str) or not name.strip():
        raise UnknownTimeZone(
            f"A time zone must be an IANA name such as 'Europe/Paris', got {name!r}."
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(
            f"Unknown time zone {name!r} ({exc}); use an IANA name such as 'Europe/Paris'."
        ) from None


def _is_random_or_hashed(fields: list[str]) -> bool:
    for value in fields:
        for token in value.split(","):
            head = token.split("/")[0].strip().upper()
            if head == "R" or head.startswith("R(") or head == "H" or head.startswith("H("):
                return True
    return False


def to_croniter_format(expression: object) -> tuple[str, bool]:
    """``expression`` in croniter's field order, and whether it has a seconds field."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidCronExpression(
            f"A cron schedule must be a non-empty string such as '*/5 * * * *', got {expression!r}."
        )
    text = ALIASES.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) not in (5, 6):
        raise InvalidCronExpression(
            f"Cron schedule {expression!r} has {len(fields)} field(s); expected 5 "
            "(minute hour day month weekday) or 6 with a leading seconds field."
        )
    if _is_random_or_hashed(fields):
        raise InvalidCronExpression(
            f"Cron schedule {expression!r} uses a random (R) or hashed (H) field; every worker "
            "must compute the same ticks, so spell the values out."
        )
    has_seconds = len(fields) == 6
    if has_seconds:
        fields = [*fields[1:], fields[0]]
    converted = " ".join(fields)
    try:
        parsed = croniter(converted, datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise InvalidCronExpression(f"Invalid cron schedule {expression!r}: {exc}") from None
    try:
        # Fields that are each valid can still describe no date (February 30th). croniter
        # only finds out when asked for a tick, so ask now rather than in a running worker.
        parsed.get_next(datetime)
    except CroniterBadDateError:
        raise NeverFiringCronExpression(
            f"Cron schedule {expression!r} never fires: no date matches its day and month fields."
        ) from None
    return converted, has_seconds


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression evaluated in one time zone. Tick times come back as aware
    UTC datetimes; daylight-saving transitions follow croniter (a wall-clock time skipped by
    the spring change runs at the first valid time after it; one repeated by the autumn change
    runs twice, once per UTC instant)."""

    expression: str
    zone: tzinfo = field(default_factory=lambda: ZoneInfo("UTC"))
    croniter_expression: str = field(init=False)
    has_seconds: bool = field(init=False)

    def __post_init__(self) -> None:
        converted, has_seconds = to_croniter_format(self.expression)
        object.__setattr__(self, "croniter_expression", converted)
        object.__setattr__(self, "has_seconds", has_seconds)

    @classmethod
    def parse(cls, expression: object, time_zone: object = None) -> CronSchedule:
        zone = resolve_time_zone(time_zone)
        if not isinstance(expression, str):
            to_croniter_format(expression)  # raises with a clear message
        return cls(str(expression), zone)

    @property
    def zone_name(self) -> str:
        return str(getattr(self.zone, "key", self.zone))

    def next_after(self, moment: datetime, *, inclusive: bool = False) -> datetime:
        """The first tick after ``moment`` (or at it, if ``inclusive``), in UTC."""
        start = moment - _ONE_MICROSECOND if inclusive else moment
        local = start.astimezone(self.zone)
        tick: datetime = croniter(self.croniter_expression, local).get_next(datetime)
        return tick.astimezone(UTC)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The next ``count`` ticks after ``moment``, in UTC."""
        ticks: list[datetime] = []
        for _ in range(count):
            moment = self.next_after(moment)
            ticks.append(moment)
        return ticks

    def describe(self) -> str:
        """A human-readable description (e.g. "At 09:00, Monday through Friday")."""
        from cron_descriptor import (
            FormatException,
            MissingFieldException,
            WrongArgumentException,
            get_description,
        )

        text = ALIASES.get(self.expression.strip().lower(), self.expression)
        try:
            return str(get_description(" ".join(text.split())))
        except (FormatException, MissingFieldException, WrongArgumentException, ValueError):
            # A description is a nicety; never fail a listing for it.
            return text


@dataclass(frozen=True)
class SettingsProblem:
    """One thing wrong in the cron or pruner settings, with the system-check id reporting it."""

    id: str
    message: str
    hint: str | None = None


def unknown_keys(
    check_id: str, where: str, given: Mapping[Any, object], known: frozenset[str]
) -> list[SettingsProblem]:
    """A problem naming the keys of the dict ``given`` that are not in ``known`` (none if all
    are known), so a typo in a setting is reported instead of silently ignored."""
    unknown = sorted(set(given) - known, key=str)
    if not unknown:
        return []
    hint = f"Known keys: {', '.join(sorted(known))}."
    return [SettingsProblem(check_id, f"{where} has unknown key(s) {unknown}.", hint=hint)]


def as_check_messages(problems: list[SettingsProblem]) -> list[object]:
    """``problems`` as system-check messages (ids starting with ``W`` are warnings)."""
    from django.core import checks

    out: list[object] = []
    for problem in problems:
        kind = checks.Warning if problem.id.startswith("W") else checks.Error
        out.append(kind(problem.message, hint=problem.hint, id=f"django_rexecutor.{problem.id}"))
    return out


def raise_for(problems: list[SettingsProblem], setting: str) -> None:
    """Refuse to start with invalid settings (the system checks report the same problems)."""
    errors = [p for p in problems if not p.id.startswith("W")]
    if errors:
        lines = "; ".join(f"{p.message} [django_rexecutor.{p.id}]" for p in errors)
        raise ConfigurationError(f"Invalid {setting}: {lines}")
