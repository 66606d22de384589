"""The admin's workflow page and its actions, through Django's test client: who may see and
change what, the link from a step's page, and the page of a big fan-out."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from demo.jobs import WorkflowStepEffect as Step
from django_rexecutor import JobStatus, Workflow
from django_rexecutor.admin.workflows import MAX_SHOWN, layers_of
from django_rexecutor.backends import get_backend
from django_rexecutor.backends.values import Claim
from django_rexecutor.job import ErrorDetails
from tests.test_admin_actions import client_for, messages_of
from tests.test_admin_helpers import fast_password_hashing, make_job, staff_user  # noqa: F401

pytestmark = pytest.mark.django_db


def page_url(run) -> str:
    return reverse("admin:django_rexecutor_workflow", args=[run.workflow_id])


def action_url(run, action: str) -> str:
    return reverse("admin:django_rexecutor_workflow_action", args=[run.workflow_id, action])


@pytest.fixture
def run():
    wf = Workflow("nightly-report")
    fetch = wf.add(Step.builder(), name="fetch")
    a = wf.add(Step.builder(), name="a", after=[fetch])
    wf.add(Step.builder(), name="notify", after=[a], run_if="finished")
    run = wf.enqueue()
    backend = get_backend()
    job = backend.claim_jobs("w", {Step.name: 1}, 1)[0]
    backend.mark_job_discarded(job.id, ErrorDetails("boom", "failed"), claim=Claim.of(job))
    return run


def test_a_steps_page_links_to_its_workflow(run) -> None:
    client = client_for("view_jobrecord")
    change = reverse("admin:django_rexecutor_jobrecord_change", args=[run["a"]])
    html = client.get(change).content.decode()
    assert f'href="{page_url(run)}"' in html and "<code>a</code>" in html
    response = client.get(page_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-step="fetch"' in html and "after a" in html
    # Without the change permissions, no action buttons.
    assert "rx-workflow-cancel" not in html and "rx-workflow-rerun" not in html


def test_a_plain_jobs_page_has_no_workflow(run) -> None:
    job = make_job()
    client = client_for("view_jobrecord")
    html = client.get(reverse("admin:django_rexecutor_jobrecord_change", args=[job.pk])).content
    assert b"rx-workflow-link" not in html


def test_the_actions_need_their_permissions_and_post(run) -> None:
    viewer = client_for("view_jobrecord")
    assert viewer.post(action_url(run, "cancel")).status_code == 403
    assert viewer.post(action_url(run, "rerun")).status_code == 403
    operator = Client()
    operator.force_login(staff_user("operator", "view_jobrecord", "cancel_job", "rerun_job"))
    assert operator.get(action_url(run, "cancel")).status_code == 405
    assert operator.post(action_url(run, "explode")).status_code == 404
    assert viewer.get(reverse("admin:django_rexecutor_workflow", args=["nope"])).status_code == 404
    assert [j.status for j in Workflow.jobs(run.workflow_id)] == [
        JobStatus.DISCARDED, JobStatus.CANCELLED, JobStatus.SCHEDULED
    ]  # fmt: skip


def test_rerun_failed_steps_then_cancel_the_workflow(run) -> None:
    operator = client_for("view_jobrecord", "cancel_job", "rerun_job")
    html = operator.get(page_url(run)).content.decode()
    assert "Rerun 1 failed step" in html and "Cancel workflow" in html
    response = operator.post(action_url(run, "rerun"), follow=True)
    assert messages_of(response) == ["1 job rerun."]
    assert [j.status for j in Workflow.jobs(run.workflow_id)] == [
        JobStatus.SCHEDULED, JobStatus.WAITING, JobStatus.WAITING
    ]  # fmt: skip
    response = operator.post(action_url(run, "cancel"), {"reason": "not tonight"}, follow=True)
    assert messages_of(response) == ["3 jobs cancelled."]
    assert {j.status for j in Workflow.jobs(run.workflow_id)} == {JobStatus.CANCELLED}
    assert LogEntry.objects.count() == 4  # one history entry per job and action


def test_a_big_fan_out_shows_its_first_steps_and_counts_the_rest() -> None:
    wf = Workflow("fan")
    root = wf.add(Step.builder(), name="root")
    fan = wf.add_many([Step.builder() for _ in range(MAX_SHOWN + 20)], after=[root])
    wf.add(Step.builder(), name="callback", after=fan)
    run = wf.enqueue()
    html = client_for("view_jobrecord").get(page_url(run)).content.decode()
    assert f"{MAX_SHOWN + 22} steps" in html
    assert "and 22 more steps" in html
    assert html.count('class="rx-step"') == MAX_SHOWN


def test_layers_follow_the_longest_path() -> None:
    # 1 → 2 → 3, and 1 → 3 directly: 3 is in the third layer.
    assert layers_of({2: [1], 3: [1, 2]}, [1, 2, 3]) == {1: 0, 2: 1, 3: 2}
    chain = {n: [n - 1] for n in range(2, 5001)}
    assert layers_of(chain, list(range(1, 5001)))[5000] == 4999
