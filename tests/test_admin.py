"""The job admin through Django's test client: pages, filters, search, read-only detail,
escaping, query counts and the changelist's cheap counting."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_rexecutor.admin.badges import PALETTE, badge, badge_css
from django_rexecutor.admin.changelist import EstimatedCountPaginator, estimated_rows
from django_rexecutor.models import JobRecord
from django_rexecutor.status import JobStatus
from tests.test_admin_helpers import fast_password_hashing, make_job, staff_user  # noqa: F401

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_rexecutor_jobrecord_changelist"


def change_url(job: JobRecord) -> str:
    return reverse("admin:django_rexecutor_jobrecord_change", args=[job.pk])


def listed_ids(response) -> list[int]:  # type: ignore[no-untyped-def]
    """Job ids shown on a changelist page, in display order."""
    assert response.status_code == 200
    return [int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', response.text)]


def listed_ids_readonly(response) -> list[int]:  # type: ignore[no-untyped-def]
    """Ids shown when the user has no action (no checkboxes): read the row links instead."""
    assert response.status_code == 200
    return [
        int(pk)
        for pk in re.findall(r'<th class="field-id"><a href="[^"]*/(\d+)/change/', response.text)
    ]


# -- every page renders ------------------------------------------------------------------


def test_every_page_renders_for_a_superuser(admin_client: Client) -> None:
    job = make_job(
        JobStatus.RETRYABLE, errors=[("timeout", "took too long", "Traceback (most recent)")]
    )
    pages = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["django_rexecutor"]),
        reverse(CHANGELIST),
        reverse(CHANGELIST) + "?status__exact=retryable&executor=emails.send&tag=x&q=emails",
        reverse(CHANGELIST) + f"?inserted_at__year={job.inserted_at.year}",
        change_url(job),
        reverse("admin:django_rexecutor_dashboard"),
        reverse("admin:django_rexecutor_dashboard") + "?partial=1",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url


def test_app_index_links_to_the_dashboard(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:app_list", args=["django_rexecutor"]))
    assert f'href="{reverse("admin:django_rexecutor_dashboard")}"' in response.text
    assert (
        reverse("admin:django_rexecutor_dashboard")
        == "/admin/django_rexecutor/jobrecord/dashboard/"
    )


def test_list_shows_badge_attempts_tags_and_last_error(admin_client: Client) -> None:
    job = make_job(
        JobStatus.DISCARDED,
        attempt=3,
        max_attempts=3,
        tags=["billing", "eu"],
        errors=[("error", "first", ""), ("panic", "second", "")],
    )
    response = admin_client.get(reverse(CHANGELIST))
    [html] = [row for row in response.text.split("<tr") if f'value="{job.pk}"' in row]
    assert 'class="rx-badge rx-badge--discarded">Discarded<' in html
    assert "3/3" in html
    assert '<code class="rx-tag">billing</code>' in html
    assert '<td class="field-last_error">panic</td>' in html
    # Newest first.
    newer = make_job()
    assert listed_ids(admin_client.get(reverse(CHANGELIST)))[:2] == [newer.pk, job.pk]


# -- filters and search -------------------------------------------------------------------


@pytest.fixture
def mixed_jobs() -> dict[str, JobRecord]:
    return {
        "mail_waiting": make_job(executor="emails.send", tags=["eu", "vip"]),
        "mail_done": make_job(JobStatus.COMPLETE, executor="emails.send", tags=["us"]),
        "report_failed": make_job(JobStatus.DISCARDED, executor="reports.build", tags=["eu"]),
        "report_running": make_job(JobStatus.EXECUTING, executor="reports.build"),
        "sms_retry": make_job(JobStatus.RETRYABLE, executor="sms.send", tags=["vip2"]),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=complete", {"mail_done"}),
        ("status__exact=executing", {"report_running"}),
        ("executor=reports.build", {"report_failed", "report_running"}),
        ("tag=eu", {"mail_waiting", "report_failed"}),
        ("tag=vip", {"mail_waiting"}),  # exact tag, not a prefix of "vip2"
        ("tag=eu&status__exact=discarded", {"report_failed"}),
        ("q=reports", {"report_failed", "report_running"}),  # part of an executor name
        ("q=SEND", {"mail_waiting", "mail_done", "sms_retry"}),
        ("q=vip2", {"sms_retry"}),  # a tag
        ("q=nothing-matches", set()),
    ],
)
def test_filters_and_search(
    admin_client: Client, mixed_jobs: dict[str, JobRecord], query: str, expected: set[str]
) -> None:
    response = admin_client.get(reverse(CHANGELIST) + "?" + query)
    ids = set(listed_ids(response))
    assert ids == {mixed_jobs[name].pk for name in expected}


def test_search_by_id(admin_client: Client, mixed_jobs: dict[str, JobRecord]) -> None:
    job = mixed_jobs["report_failed"]
    for term in (str(job.pk), f"#{job.pk}"):
        assert listed_ids(admin_client.get(reverse(CHANGELIST), {"q": term})) == [job.pk]
    huge = str(2**70)
    assert listed_ids(admin_client.get(reverse(CHANGELIST), {"q": huge})) == []


@pytest.mark.parametrize("term", ["²", "#²", "x²", "①", "١٢"])
def test_search_for_characters_that_are_digits_only_in_unicode(
    admin_client: Client, mixed_jobs: dict[str, JobRecord], term: str
) -> None:
    # "²".isdigit() is True, yet int("²") raises: such a word is not an id, but it may be a tag.
    tagged = make_job(tags=[term])
    response = admin_client.get(reverse(CHANGELIST), {"q": term})
    assert listed_ids(response) == [tagged.pk]


def test_filter_choices_list_executors_and_recent_tags(
    admin_client: Client, mixed_jobs: dict[str, JobRecord]
) -> None:
    text = admin_client.get(reverse(CHANGELIST)).text
    for executor in ("emails.send", "reports.build", "sms.send"):
        assert f"?executor={executor}" in text
    for tag in ("eu", "us", "vip", "vip2"):
        assert f"?tag={tag}" in text


def test_date_drill_down(admin_client: Client) -> None:
    old = make_job(inserted_at=datetime(2024, 3, 9, 12, tzinfo=UTC))
    new = make_job()
    year = timezone.localtime(new.inserted_at).year
    text = admin_client.get(reverse(CHANGELIST)).text
    # Years from the first to the last job are offered (found without a DISTINCT scan).
    assert "?inserted_at__year=2024" in text and f"?inserted_at__year={year}" in text
    assert listed_ids(admin_client.get(reverse(CHANGELIST), {"inserted_at__year": 2024})) == [
        old.pk
    ]
    march = admin_client.get(
        reverse(CHANGELIST), {"inserted_at__year": 2024, "inserted_at__month": 3}
    )
    assert listed_ids(march) == [old.pk]
    assert "inserted_at__day=9" in march.text and "inserted_at__day=10" not in march.text
    day = admin_client.get(
        reverse(CHANGELIST),
        {"inserted_at__year": 2024, "inserted_at__month": 3, "inserted_at__day": 8},
    )
    assert listed_ids(day) == []


# -- the detail page ----------------------------------------------------------------------


def test_detail_is_read_only_and_escapes_payloads(admin_client: Client) -> None:
    job = make_job(
        JobStatus.RETRYABLE,
        data={"html": "<script>alert('x')</script>", "n": [1, 2]},
        metadata={"request": "<b>id</b>"},
        errors=[
            ("timeout", "took <i>too</i> long", "Traceback (most recent call last):\n  x"),
            ("ValueError", "bad input", ""),
        ],
    )
    response = admin_client.get(change_url(job))
    text = response.text
    assert "<script>alert(" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;b&gt;id&lt;/b&gt;" in text
    assert '<pre class="rx-json">{\n  &quot;html&quot;' in text
    # The error history, oldest first, with the traceback in a <pre>.
    assert text.index("took &lt;i&gt;too&lt;/i&gt; long") < text.index("bad input")
    assert '<pre class="rx-traceback">Traceback (most recent call last):\n  x</pre>' in text
    # No form fields: nothing to edit, no save or delete button.
    assert 'name="_save"' not in text and "deletelink" not in text
    assert "<textarea" not in text and 'name="executor"' not in text


def test_detail_shows_every_field_of_the_model() -> None:
    """A field added to the model later must be added to the detail page too."""
    model_admin = admin.site._registry[JobRecord]
    shown = {name for _, options in model_admin.fieldsets for name in options["fields"]}
    shown_as = {
        "status": "status_badge",
        "attempt": "attempts",
        "max_attempts": "attempts",
        "tags": "tag_list",
        "data": "data_json",
        "metadata": "metadata_json",
        "result": "result_json",
        "progress": "progress_bar",
        "workflow_id": "workflow_link",
        "step": "workflow_link",
        # Times are shown decoded from their text, so an unreadable one cannot fail the page.
        **{
            f.name: f"{f.name}_shown"
            for f in JobRecord._meta.concrete_fields
            if f.name.endswith("_at")
        },
    }
    for field in JobRecord._meta.concrete_fields:
        assert shown_as.get(field.name, field.name) in shown, field.name
    assert set(model_admin.readonly_fields) == shown


def test_jobs_cannot_be_added_changed_or_deleted_through_forms(admin_client: Client) -> None:
    job = make_job(JobStatus.COMPLETE)
    base = "admin:django_rexecutor_jobrecord"
    assert admin_client.get(reverse(f"{base}_add")).status_code == 403
    assert admin_client.get(reverse(f"{base}_delete", args=[job.pk])).status_code == 403
    response = admin_client.post(change_url(job), {"executor": "evil", "status": "scheduled"})
    assert response.status_code == 403
    job.refresh_from_db()
    assert (job.executor, job.status) == ("emails.send", JobStatus.COMPLETE)
    # The bulk delete action is not offered either.
    assert "delete_selected" not in admin_client.get(reverse(CHANGELIST)).text


def test_view_only_staff_sees_jobs_and_their_errors() -> None:
    job = make_job(JobStatus.DISCARDED, errors=[("panic", "boom", "trace")])
    client = Client()
    client.force_login(staff_user("viewer", "view_jobrecord"))
    assert job.pk in listed_ids_readonly(client.get(reverse(CHANGELIST)))
    text = client.get(change_url(job)).text
    assert "boom" in text and '<pre class="rx-traceback">trace</pre>' in text
    assert client.get(reverse("admin:django_rexecutor_dashboard")).status_code == 200


def test_staff_without_view_permission_is_refused() -> None:
    client = Client()
    client.force_login(staff_user("nobody"))
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse("admin:django_rexecutor_dashboard")).status_code == 403


# -- speed: no N+1, no full count ---------------------------------------------------------


def _changelist_queries(client: Client, n_jobs: int) -> int:
    JobRecord.objects.all().delete()
    for i in range(n_jobs):
        make_job(
            [JobStatus.DISCARDED, JobStatus.COMPLETE, JobStatus.RETRYABLE][i % 3],
            executor=f"exec.{i % 4}",
            tags=[f"t{i % 5}"],
            errors=[("error", "x", "")] if i % 2 else [],
        )
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(CHANGELIST))
    assert len(listed_ids(response)) == n_jobs
    return len(queries)


def test_changelist_query_count_does_not_grow_with_the_rows_shown(admin_client: Client) -> None:
    assert _changelist_queries(admin_client, 5) == _changelist_queries(admin_client, 50)


def test_changelist_never_counts_the_whole_table_when_filtered(admin_client: Client) -> None:
    make_job(JobStatus.COMPLETE)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(reverse(CHANGELIST), {"status": "complete"})
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    # Only the filtered page count: show_full_result_count is off, facets are never computed.
    assert len(counts) == 1 and "WHERE" in counts[0].upper(), counts


@pytest.mark.postgres_only
def test_paginator_uses_the_planner_estimate_for_the_unfiltered_table_on_postgres() -> None:
    JobRecord.objects.bulk_create(JobRecord(executor="bulk") for _ in range(300))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {JobRecord._meta.db_table}")
    small = EstimatedCountPaginator(JobRecord.objects.order_by("-pk"), 50)
    # Below the threshold the count is exact.
    assert small.count == 300

    class LowThreshold(EstimatedCountPaginator):
        estimate_threshold = 10

    JobRecord.objects.bulk_create(JobRecord(executor="late") for _ in range(7))
    # The estimate still says 300 (ANALYZE ran before the last 7): proof that no COUNT ran.
    with CaptureQueriesContext(connection) as queries:
        estimated = LowThreshold(JobRecord.objects.order_by("-pk"), 50).count
    assert estimated == 300
    assert not any("COUNT(" in q["sql"].upper() for q in queries)
    # A filtered list is always counted exactly.
    assert LowThreshold(JobRecord.objects.filter(executor="late").order_by("-pk"), 50).count == 7


def test_paginator_counts_filtered_lists_exactly_and_estimates_only_on_postgres() -> None:
    JobRecord.objects.bulk_create(JobRecord(executor="bulk") for _ in range(12))
    JobRecord.objects.bulk_create(JobRecord(executor="other") for _ in range(3))

    class LowThreshold(EstimatedCountPaginator):
        estimate_threshold = 1

    filtered = JobRecord.objects.filter(executor="other").order_by("-pk")
    assert LowThreshold(filtered, 5).count == 3
    if connection.vendor != "postgresql":
        # Only PostgreSQL's planner statistics are read: elsewhere the count is exact.
        assert estimated_rows(JobRecord.objects.all()) is None
        assert LowThreshold(JobRecord.objects.order_by("-pk"), 5).count == 15
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {JobRecord._meta.db_table}")
        assert estimated_rows(JobRecord.objects.all()) == 15


# -- badges --------------------------------------------------------------------------------


def test_every_status_has_badge_colours_for_both_themes() -> None:
    assert set(PALETTE) == set(JobStatus)
    css = badge_css()
    for status in JobStatus:
        assert str(badge(status)) == (
            f'<span class="rx-badge rx-badge--{status.value}">{status.label}</span>'
        )
        assert f'html[data-theme="dark"] .rx-badge--{status.value}{{' in css
        assert f".rx-badge--{status.value}{{background:{PALETTE[status].light_bg}" in css
    assert "prefers-color-scheme: dark" in css
    assert str(badge("<weird>")) == '<span class="rx-badge">&lt;weird&gt;</span>'


def test_detail_of_a_missing_job_redirects_with_a_message(admin_client: Client) -> None:
    response = admin_client.get(
        reverse("admin:django_rexecutor_jobrecord_change", args=[987654]), follow=True
    )
    assert response.status_code == 200
    assert "987654" in response.text


@pytest.mark.postgres_only
def test_tag_filter_and_search_can_use_the_partial_gin_index_on_postgres() -> None:
    """The tags index only holds tagged jobs; the filter must say so for the planner to use
    it (with sequential scans disabled, an unusable index shows up as a Seq Scan)."""
    make_job(tags=["eu"])
    queries = [
        JobRecord.objects.filter(tags__contains_tag="eu"),
        JobRecord.objects.filter(Q(tags__contains_tag="eu") | Q(pk=1)),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for qs in queries:
            sql, params = qs.query.sql_with_params()
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "rexecutor_job_tags_gin" in plan, plan
    assert list(queries[0]) == [JobRecord.objects.get(tags=["eu"])]
