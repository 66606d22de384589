"""Rerun and cancel from the admin: bulk actions and detail-page buttons change exactly the
eligible jobs, report the skipped ones, and need their permission and a CSRF token."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import JobStatus
from tests.test_admin_helpers import (  # noqa: F401
    fast_password_hashing,
    make_job,
    staff_user,
    statuses,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:django_rexecutor_jobrecord_changelist")


def action_url(job: JobRecord, action: str) -> str:
    return reverse(f"admin:django_rexecutor_jobrecord_{action}", args=[job.pk])


def run_action(client: Client, action: str, jobs: list[JobRecord], **extra: str):  # type: ignore[no-untyped-def]
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [j.pk for j in jobs], **extra},
        follow=True,
    )


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def client_for(*codenames: str, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(staff_user("staff", *codenames))
    return client


@pytest.fixture
def jobs() -> dict[str, JobRecord]:
    return {
        "scheduled": make_job(JobStatus.SCHEDULED),
        "executing": make_job(JobStatus.EXECUTING),
        "retryable": make_job(JobStatus.RETRYABLE, errors=[("error", "x", "")]),
        "complete": make_job(JobStatus.COMPLETE),
        "cancelled": make_job(JobStatus.CANCELLED),
        "discarded": make_job(JobStatus.DISCARDED, attempt=3, max_attempts=3),
    }


def test_bulk_rerun_changes_exactly_the_eligible_jobs(
    admin_client: Client, jobs: dict[str, JobRecord]
) -> None:
    response = run_action(admin_client, "rerun_selected", list(jobs.values()))
    assert response.status_code == 200
    assert messages_of(response) == [
        "4 jobs rerun, 2 skipped (1 already running, 1 already waiting to run)."
    ]
    assert statuses(*jobs.values()) == [
        JobStatus.SCHEDULED,  # untouched
        JobStatus.EXECUTING,  # untouched
        JobStatus.SCHEDULED,  # attempt 1 -> scheduled
        JobStatus.SCHEDULED,
        JobStatus.SCHEDULED,
        JobStatus.RETRYABLE,  # attempt 3 -> retryable
    ]
    discarded = JobRecord.objects.get(pk=jobs["discarded"].pk)
    assert (discarded.max_attempts, discarded.discarded_at) == (4, None)
    assert JobRecord.objects.get(pk=jobs["scheduled"].pk).max_attempts == 3


def test_bulk_cancel_cancels_waiting_requests_running_and_skips_finished(
    admin_client: Client, jobs: dict[str, JobRecord]
) -> None:
    response = run_action(admin_client, "cancel_selected", list(jobs.values()))
    assert messages_of(response) == [
        "3 jobs cancelled (1 running: cancellation requested), 3 skipped (3 already finished)."
    ]
    assert statuses(*jobs.values()) == [
        JobStatus.CANCELLED,
        JobStatus.EXECUTING,  # cancelled when its attempt ends
        JobStatus.CANCELLED,
        JobStatus.COMPLETE,
        JobStatus.CANCELLED,
        JobStatus.DISCARDED,
    ]
    assert JobRecord.objects.get(pk=jobs["executing"].pk).cancel_requested_at is not None
    error = JobErrorRecord.objects.filter(job=jobs["scheduled"]).get()
    assert (error.error_type, error.message) == ("cancelled", "cancelled from the admin by admin")


def test_a_fully_eligible_selection_reports_success_without_skips(admin_client: Client) -> None:
    done = [make_job(JobStatus.COMPLETE), make_job(JobStatus.COMPLETE)]
    response = run_action(admin_client, "rerun_selected", done)
    [message] = list(get_messages(response.wsgi_request))
    assert (str(message), message.level_tag) == ("2 jobs rerun.", "success")


def test_select_all_across_pages_applies_to_the_filtered_set(admin_client: Client) -> None:
    waiting = [make_job() for _ in range(3)]
    finished = make_job(JobStatus.COMPLETE)
    response = admin_client.post(
        CHANGELIST + "?status__exact=scheduled",
        {"action": "cancel_selected", "select_across": "1", "_selected_action": [waiting[0].pk]},
        follow=True,
    )
    assert messages_of(response) == ["3 jobs cancelled."]
    assert statuses(*waiting, finished) == [JobStatus.CANCELLED] * 3 + [JobStatus.COMPLETE]


def test_detail_buttons_rerun_and_cancel(admin_client: Client) -> None:
    failed = make_job(JobStatus.DISCARDED, errors=[("panic", "boom", "")])
    page = admin_client.get(reverse("admin:django_rexecutor_jobrecord_change", args=[failed.pk]))
    assert f'action="{action_url(failed, "rerun")}"' in page.text
    assert 'id="rx-cancel-button"' not in page.text  # a finished job cannot be cancelled
    response = admin_client.post(action_url(failed, "rerun"), follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "admin:django_rexecutor_jobrecord_change", args=[failed.pk]
    )
    assert messages_of(response) == ["1 job rerun."]
    assert statuses(failed) == [JobStatus.SCHEDULED]
    # Now waiting: cancel is offered, rerun is not.
    assert 'id="rx-rerun-button"' not in response.text
    assert 'id="rx-cancel-button"' in response.text
    response = admin_client.post(action_url(failed, "cancel"), follow=True)
    assert messages_of(response) == ["1 job cancelled."]
    assert statuses(failed) == [JobStatus.CANCELLED]
    # Stale buttons (another tab) report the skip instead of failing.
    response = admin_client.post(action_url(failed, "cancel"), follow=True)
    assert messages_of(response) == ["0 jobs cancelled, 1 skipped (1 already finished)."]


def test_cancelling_a_running_job_from_its_page_shows_the_pending_request(
    admin_client: Client,
) -> None:
    running = make_job(JobStatus.EXECUTING)
    response = admin_client.post(action_url(running, "cancel"), follow=True)
    assert messages_of(response) == ["1 job cancelled (1 running: cancellation requested)."]
    assert "Cancellation requested" in response.text
    assert 'id="rx-cancel-button"' not in response.text


def test_action_urls_accept_post_only(admin_client: Client) -> None:
    job = make_job(JobStatus.COMPLETE)
    assert admin_client.get(action_url(job, "rerun")).status_code == 405
    assert statuses(job) == [JobStatus.COMPLETE]
    assert (
        admin_client.post(
            reverse("admin:django_rexecutor_jobrecord_rerun", args=[999999])
        ).status_code
        == 404
    )


# -- permissions ---------------------------------------------------------------------------


def test_view_only_staff_cannot_run_either_action(jobs: dict[str, JobRecord]) -> None:
    client = client_for("view_jobrecord")
    before = statuses(*jobs.values())
    page = client.get(CHANGELIST)
    assert "rerun_selected" not in page.text and "cancel_selected" not in page.text
    for action in ("rerun_selected", "cancel_selected"):
        response = run_action(client, action, list(jobs.values()))
        # With no action available the POST is ignored: the list is shown again.
        assert response.status_code == 200
        assert messages_of(response) == []
    detail = client.get(
        reverse("admin:django_rexecutor_jobrecord_change", args=[jobs["scheduled"].pk])
    )
    assert "rx-cancel-button" not in detail.text and "rx-rerun-button" not in detail.text
    assert client.post(action_url(jobs["scheduled"], "cancel")).status_code == 403
    assert client.post(action_url(jobs["complete"], "rerun")).status_code == 403
    assert statuses(*jobs.values()) == before
    assert not JobErrorRecord.objects.filter(error_type="cancelled").exists()
    assert not LogEntry.objects.exists()


def test_the_change_permission_does_not_grant_actions(jobs: dict[str, JobRecord]) -> None:
    client = client_for("view_jobrecord", "change_jobrecord")
    before = statuses(*jobs.values())
    run_action(client, "cancel_selected", list(jobs.values()))
    assert client.post(action_url(jobs["complete"], "rerun")).status_code == 403
    assert statuses(*jobs.values()) == before


def test_each_action_needs_its_own_permission(jobs: dict[str, JobRecord]) -> None:
    client = client_for("view_jobrecord", "rerun_job")
    page = client.get(CHANGELIST).text
    assert "rerun_selected" in page and "cancel_selected" not in page
    assert client.post(action_url(jobs["scheduled"], "cancel")).status_code == 403
    response = run_action(client, "rerun_selected", [jobs["complete"]])
    assert messages_of(response) == ["1 job rerun."]
    assert statuses(jobs["complete"], jobs["scheduled"]) == [JobStatus.SCHEDULED] * 2
    assert JobRecord.objects.get(pk=jobs["scheduled"].pk).cancelled_at is None


def test_custom_permissions_without_view_permission_grant_nothing(
    jobs: dict[str, JobRecord],
) -> None:
    client = client_for("rerun_job", "cancel_job")
    assert client.get(CHANGELIST).status_code == 403
    assert client.post(action_url(jobs["scheduled"], "cancel")).status_code == 403
    assert client.post(CHANGELIST, {"action": "cancel_selected"}).status_code == 403
    assert statuses(jobs["scheduled"]) == [JobStatus.SCHEDULED]


# -- CSRF ----------------------------------------------------------------------------------


def test_posts_without_a_csrf_token_are_refused(jobs: dict[str, JobRecord]) -> None:
    client = client_for("view_jobrecord", "rerun_job", "cancel_job", enforce_csrf=True)
    before = statuses(*jobs.values())
    response = client.post(
        CHANGELIST,
        {"action": "cancel_selected", "_selected_action": [j.pk for j in jobs.values()]},
    )
    assert response.status_code == 403
    assert client.post(action_url(jobs["scheduled"], "cancel")).status_code == 403
    assert client.post(action_url(jobs["complete"], "rerun")).status_code == 403
    assert statuses(*jobs.values()) == before
    # With the token the same request works: the refusal above was about CSRF only.
    client.get(CHANGELIST)
    token = client.cookies["csrftoken"].value
    response = client.post(action_url(jobs["scheduled"], "cancel"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert statuses(jobs["scheduled"]) == [JobStatus.CANCELLED]


def test_actions_are_recorded_in_each_jobs_admin_history(
    admin_client: Client, jobs: dict[str, JobRecord]
) -> None:
    from django.contrib.admin.models import LogEntry

    run_action(admin_client, "cancel_selected", list(jobs.values()))
    admin_client.post(action_url(jobs["complete"], "rerun"))
    entries = {
        (int(e.object_id), e.change_message, e.user.username) for e in LogEntry.objects.all()
    }
    assert entries == {
        (jobs["scheduled"].pk, "Cancelled from the admin.", "admin"),
        (jobs["retryable"].pk, "Cancelled from the admin.", "admin"),
        (jobs["executing"].pk, "Cancellation requested from the admin.", "admin"),
        (jobs["complete"].pk, "Rerun from the admin.", "admin"),
    }
    history = admin_client.get(
        reverse("admin:django_rexecutor_jobrecord_history", args=[jobs["complete"].pk])
    )
    assert "Rerun from the admin." in history.text
