"""The jobs dashboard: counts, queue lag, the throughput chart, workers and recent errors,
checked against jobs whose numbers we know."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_rexecutor import DjangoBackend
from django_rexecutor.admin.dashboard import _nice_ceiling, chart_svg, format_age
from django_rexecutor.models import JobErrorRecord, JobRecord, WorkerRecord
from django_rexecutor.status import JobStatus
from tests.test_admin_helpers import fast_password_hashing, make_job  # noqa: F401

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:django_rexecutor_dashboard")


def panel(html: str, panel_id: str) -> str:
    """The HTML of one dashboard panel."""
    start = html.index(f'id="{panel_id}"')
    end = html.find('<div class="module', start)
    return html[start : end if end != -1 else len(html)]


def row_of(html: str, name: str) -> list[str]:
    """The cells of the status-count row of executor ``name``."""
    [row] = [r for r in html.split("<tr>") if f">{name}</a></th>" in r]
    return re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)


def test_counts_by_executor_and_status_with_queue_lag(admin_client: Client) -> None:
    now = timezone.now()
    make_job(executor="mail", scheduled_at=now - timedelta(seconds=120))
    make_job(executor="mail", scheduled_at=now - timedelta(seconds=30))
    make_job(executor="mail", scheduled_at=now + timedelta(hours=1))  # not due: no lag
    make_job(JobStatus.COMPLETE, executor="mail")
    make_job(JobStatus.EXECUTING, executor="report")
    make_job(JobStatus.DISCARDED, executor="report")
    html = panel(admin_client.get(DASHBOARD).text, "rx-status-counts")
    # Columns: scheduled, executing, retryable, complete, cancelled, discarded, waiting, total,
    # lag.
    mail = row_of(html, "mail")
    assert mail[:8] == ["3", "0", "0", "1", "0", "0", "0", "4"]
    assert mail[8] == "2 min"  # the job due 120 s ago; the one due in an hour does not count
    report = row_of(html, "report")
    assert report[:8] == ["0", "1", "0", "0", "0", "1", "0", "2"]
    assert "—" in report[8]
    # The totals row sums every executor; its lag is the worst one.
    totals = re.findall(r"<td[^>]*>(.*?)</td>", html.split("<tfoot>")[1], re.S)
    assert totals[:8] == ["3", "1", "0", "1", "0", "1", "0", "6"]
    assert "?executor=mail" in html


def test_chart_counts_completed_and_failed_per_minute_in_the_last_hour(
    admin_client: Client,
) -> None:
    now = timezone.now()
    for _ in range(3):
        make_job(JobStatus.COMPLETE, finished_at=now - timedelta(minutes=5))
    make_job(JobStatus.COMPLETE, finished_at=now - timedelta(hours=2))  # outside the window
    failing = make_job(JobStatus.RETRYABLE)
    JobErrorRecord.objects.create(job=failing, attempt=1, error_type="error", message="a")
    JobErrorRecord.objects.create(job=failing, attempt=2, error_type="timeout", message="b")
    JobErrorRecord.objects.create(
        job=failing, attempt=2, error_type="cancelled", message="not a failure"
    )
    text = admin_client.get(DASHBOARD).text
    chart = panel(text, "rx-throughput")
    assert '<svg id="rx-throughput-chart"' in chart
    assert re.search(r"<title>\d\d:\d\d — 3 completed</title>", chart)
    assert re.search(r"<title>\d\d:\d\d — 2 failed</title>", chart)
    assert "3 completed" in chart and "2 failed attempts" in chart
    assert chart.count("<rect") == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3900, "1 h 5 min"),
        (86400 + 4 * 3600 + 59, "1 d 4 h"),
        (-5, "0 s"),
    ],
)
def test_ages_are_readable(seconds: float, text: str) -> None:
    assert format_age(timedelta(seconds=seconds)) == text
    assert format_age(None) == "—"


def test_chart_scales_to_a_readable_maximum() -> None:
    assert [_nice_ceiling(n) for n in (0, 1, 3, 7, 11, 49, 51, 999)] == [
        1,
        1,
        5,
        10,
        20,
        50,
        100,
        1000,
    ]
    now = timezone.now().replace(second=0, microsecond=0)
    minutes = [now - timedelta(minutes=n) for n in range(59, -1, -1)]
    svg = str(chart_svg(minutes, [0] * 59 + [7], [0] * 60))
    # The tallest bar reaches 7/10 of the plot (164 px high, from y=10).
    heights = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', svg)
    assert heights == ["114.8"]


def test_workers_with_heartbeat_running_jobs_and_staleness(admin_client: Client) -> None:
    running = make_job(JobStatus.EXECUTING)
    backend = DjangoBackend()
    backend.record_heartbeat("host-a:1", executors=["mail"], concurrency=4, running=[running.pk])
    backend.record_heartbeat("host-b:2", executors=["report"], concurrency=2)
    WorkerRecord.objects.filter(pk="host-b:2").update(
        heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    html = panel(admin_client.get(DASHBOARD).text, "rx-workers")
    live = html[html.index("host-a:1") : html.index("host-b:2")]
    change = reverse("admin:django_rexecutor_jobrecord_change", args=[running.pk])
    assert f'<a href="{change}">#{running.pk}</a>' in live
    assert "1/4" in live and "stale" not in live
    stale = html[html.index("host-b:2") :]
    assert "(stale)" in stale and "0/2" in stale and "10 min ago" in stale


def test_recent_errors_newest_first_escaped_and_linked(admin_client: Client) -> None:
    old = make_job(JobStatus.RETRYABLE, executor="mail", errors=[("error", "older one", "")])
    new = make_job(JobStatus.DISCARDED, executor="report", errors=[("panic", "<b>boom</b>", "")])
    JobErrorRecord.objects.filter(job=old).update(recorded_at=timezone.now() - timedelta(hours=3))
    html = panel(admin_client.get(DASHBOARD).text, "rx-recent-errors")
    assert html.index("&lt;b&gt;boom&lt;/b&gt;") < html.index("older one")
    assert "<b>boom</b>" not in html
    change = reverse("admin:django_rexecutor_jobrecord_change", args=[new.pk])
    assert f'<a href="{change}">report #{new.pk}</a>' in html


def test_partial_refresh_returns_only_the_panels(admin_client: Client) -> None:
    make_job(executor="mail")
    full = admin_client.get(DASHBOARD).text
    partial = admin_client.get(DASHBOARD, {"partial": "1"}).text
    assert "<html" in full and 'id="rx-auto-refresh"' in full
    assert "<html" not in partial and 'id="rx-status-counts"' in partial
    assert 'id="rx-throughput-chart"' in partial


def test_empty_dashboard_says_so(admin_client: Client) -> None:
    text = admin_client.get(DASHBOARD).text
    assert "No jobs yet." in text
    assert "No worker has sent a heartbeat." in text
    assert "No errors recorded." in text


def test_dashboard_queries_do_not_grow_with_jobs_or_executors(admin_client: Client) -> None:
    def queries(n: int) -> int:
        JobRecord.objects.all().delete()
        WorkerRecord.objects.all().delete()
        now = timezone.now()
        for i in range(n):
            status = [JobStatus.COMPLETE, JobStatus.DISCARDED, JobStatus.SCHEDULED][i % 3]
            make_job(
                status,
                executor=f"exec.{i}",
                errors=[("error", "x", "")],
                finished_at=now - timedelta(minutes=i % 50),
            )
            DjangoBackend().record_heartbeat(f"w{i}", executors=["x"], concurrency=1)
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(DASHBOARD).status_code == 200
        return len(captured)

    assert queries(2) == queries(25)
