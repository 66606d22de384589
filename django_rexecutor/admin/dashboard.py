"""The dashboard's numbers and its chart. Every query reads an index range, a bounded time
window or a bounded sample, never every row, so the page stays cheap on a table with millions
of jobs (see ``status_counts``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count
from django.db.models.functions import Trunc
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from ..backends.values import WorkerInfo
from ..conf import rexecutor_settings
from ..models import JobErrorRecord, JobRecord
from ..status import TERMINAL_STATUSES, ErrorType, JobStatus
from .access import admin_backend
from .badges import FAILED_COLOUR, PALETTE, badge

#: Minutes shown by the throughput chart.
WINDOW_MINUTES = 60
RECENT_ERRORS = 20


def format_age(age: dt.timedelta | None) -> str:
    """A short, readable duration: "45 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    if age is None:
        return "—"
    seconds = max(0, int(age.total_seconds()))
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return _("%(m)d min") % {"m": minutes}
    if days < 1:
        return _("%(h)d h %(m)d min") % {"h": hours, "m": minutes % 60}
    return _("%(d)d d %(h)d h") % {"d": days, "h": hours % 24}


@dataclass
class ExecutorRow:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    oldest_ready_at: dt.datetime | None = None
    lag: dt.timedelta | None = None
    #: Paused cluster-wide (``Backend.paused_executors``): no worker claims its jobs.
    paused: bool = False

    @property
    def lag_text(self) -> str:
        return format_age(self.lag)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def cells(self) -> list[int]:
        return [self.counts.get(status.value, 0) for status in JobStatus]


@dataclass
class WorkerRow:
    info: WorkerInfo
    age: dt.timedelta
    stale: bool
    running_links: SafeString

    @property
    def age_text(self) -> str:
        return format_age(self.age)


def status_counts(alias: str, now: dt.datetime) -> tuple[list[ExecutorRow], bool]:
    """Jobs per executor and status, with the queue lag (how long the oldest ready job has
    been due), and whether the finished statuses' counts are estimates.

    Waiting and running jobs are counted exactly, through the status index: they are the
    queue, however big the table. Finished jobs pile up without bound: on PostgreSQL, once
    the planner estimates more than ``observing.ESTIMATE_THRESHOLD`` jobs, they are counted in a
    sample of about ``observing.SAMPLE_ROWS`` rows and scaled up, instead of a ``GROUP BY`` over
    every row on every refresh (``Backend.job_counts``)."""
    backend = admin_backend(alias)
    counted = backend.job_counts()
    rows: dict[str, ExecutorRow] = {}
    for (executor, status), n in counted.counts.items():
        rows.setdefault(executor, ExecutorRow(executor)).counts[status] = n
    estimate = bool(counted.estimated)
    for executor, oldest in backend.oldest_ready_at().items():
        row = rows.setdefault(executor, ExecutorRow(executor))
        row.oldest_ready_at = oldest
        row.lag = max(dt.timedelta(0), now - oldest)
    return [rows[name] for name in sorted(rows)], estimate


def _minute(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(second=0, microsecond=0)


def throughput(alias: str, now: dt.datetime) -> tuple[list[dt.datetime], list[int], list[int]]:
    """Per minute over the last hour: jobs completed, and failed attempts (errors recorded,
    except cancellations). Both are bounded by time; the errors through their
    ``recorded_at`` index."""
    end = _minute(now)
    minutes = [end - dt.timedelta(minutes=n) for n in range(WINDOW_MINUTES - 1, -1, -1)]
    since = minutes[0]
    completed = (
        JobRecord.objects.using(alias)
        .filter(status=JobStatus.COMPLETE, completed_at__gte=since)
        .annotate(minute=Trunc("completed_at", "minute", tzinfo=dt.UTC))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("*"))
    )
    failed = (
        JobErrorRecord.objects.using(alias)
        .filter(recorded_at__gte=since)
        .exclude(error_type=ErrorType.CANCELLED)
        .annotate(minute=Trunc("recorded_at", "minute", tzinfo=dt.UTC))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("*"))
    )
    done_by = {_minute(m): n for m, n in completed}
    failed_by = {_minute(m): n for m, n in failed}
    return minutes, [done_by.get(m, 0) for m in minutes], [failed_by.get(m, 0) for m in minutes]


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … that is >= ``value`` (a readable axis top)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def chart_svg(minutes: list[dt.datetime], completed: list[int], failed: list[int]) -> SafeString:
    """A bar chart of completed (green) and failed (red) jobs per minute, as inline SVG: no
    script and no external asset. Text uses ``currentColor``, so it follows the admin theme."""
    width, height = 760, 200
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_ceiling(max([*completed, *failed, 1]))
    slot = plot_w / len(minutes)
    bar = max(1.0, slot / 2 - 1)

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / top_value

    parts: list[SafeString] = []
    for tick in (0, top_value // 2, top_value) if top_value > 1 else (0, 1):
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="rx-grid"/>'
                '<text x="{}" y="{}" text-anchor="end" class="rx-axis">{}</text>',
                left,
                width - right,
                f"{y(tick):.1f}",
                f"{y(tick):.1f}",
                left - 6,
                f"{y(tick) + 4:.1f}",
                tick,
            )
        )
    colour_done = PALETTE[JobStatus.COMPLETE].strong
    for i, (minute, done, bad) in enumerate(zip(minutes, completed, failed, strict=True)):
        x = left + i * slot
        label = formats.time_format(timezone.localtime(minute), "H:i")
        for offset, value, colour, what in (
            (0.0, done, colour_done, _("completed")),
            (bar, bad, FAILED_COLOUR, _("failed")),
        ):
            if value:
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                        "<title>{} — {} {}</title></rect>",
                        f"{x + offset + 0.5:.1f}",
                        f"{y(value):.1f}",
                        f"{bar:.1f}",
                        f"{top + plot_h - y(value):.1f}",
                        colour,
                        label,
                        value,
                        what,
                    )
                )
        if i % 10 == 0 or i == len(minutes) - 1:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" class="rx-axis">{}</text>',
                    f"{x + slot / 2:.1f}",
                    height - 8,
                    label,
                )
            )
    body = mark_safe("".join(parts))
    return format_html(
        '<svg id="rx-throughput-chart" class="rx-chart" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}" preserveAspectRatio="xMidYMid meet">{}</svg>',
        width,
        height,
        _("Jobs completed and failed per minute over the last hour"),
        body,
    )


def workers(alias: str, now: dt.datetime) -> list[WorkerRow]:
    """Workers by last heartbeat; one silent for longer than ``RESCUE_AFTER`` is stale (its
    jobs are about to be rescued)."""
    rescue_after = rexecutor_settings.RESCUE_AFTER
    rows = []
    for info in admin_backend(alias).live_workers():
        age = max(dt.timedelta(0), now - info.heartbeat_at)
        links = format_html_join(
            " ",
            '<a href="{}">#{}</a>',
            (
                (reverse("admin:django_rexecutor_jobrecord_change", args=[pk]), pk)
                for pk in info.running
            ),
        )
        rows.append(WorkerRow(info, age, age > rescue_after, links))
    return rows


def recent_errors(alias: str) -> list[JobErrorRecord]:
    return list(
        JobErrorRecord.objects.using(alias)
        .select_related("job")
        .only(
            "id",
            "attempt",
            "error_type",
            "message",
            "recorded_at",
            "job__id",
            "job__executor",
            "job__status",
        )
        .order_by("-recorded_at", "-id")[:RECENT_ERRORS]
    )


def collect(alias: str) -> dict[str, Any]:
    """Everything the dashboard template shows."""
    now = timezone.now()
    executors, estimated = status_counts(alias, now)
    paused = admin_backend(alias).paused_executors()
    known = {row.name for row in executors}
    executors = sorted(
        [*executors, *(ExecutorRow(name) for name in paused - known)], key=lambda r: r.name
    )
    for row in executors:
        row.paused = row.name in paused
    totals = ExecutorRow(_("All executors"))
    for row in executors:
        for status, n in row.counts.items():
            totals.counts[status] = totals.counts.get(status, 0) + n
    lags = [row.lag for row in executors if row.lag is not None]
    totals.lag = max(lags) if lags else None
    minutes, completed, failed = throughput(alias, now)
    return {
        "rx_now": now,
        "rx_statuses": [
            (status, badge(status), estimated and status in TERMINAL_STATUSES)
            for status in JobStatus
        ],
        "rx_estimated": estimated,
        "rx_executors": executors,
        "rx_totals": totals,
        "rx_chart": chart_svg(minutes, completed, failed),
        "rx_completed_total": sum(completed),
        "rx_failed_total": sum(failed),
        "rx_colour_completed": PALETTE[JobStatus.COMPLETE].strong,
        "rx_colour_failed": FAILED_COLOUR,
        "rx_workers": workers(alias, now),
        "rx_rescue_after": rexecutor_settings.RESCUE_AFTER,
        "rx_errors": recent_errors(alias),
    }
