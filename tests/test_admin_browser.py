"""The admin in a real browser (headless Chromium through Selenium): log in, filter the job
list, cancel jobs with the bulk action, read the message, switch to the dark theme, open the
dashboard from the app index, find the chart, watch the panels refresh by themselves, and pause
and resume an executor from it.

Screenshots of the dashboard and of a job's detail page are saved in ``artifacts/``; the
README's copies in ``docs/images/`` are refreshed from them by hand (see docs/admin.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_rexecutor import DjangoBackend
from django_rexecutor.admin.badges import PALETTE
from django_rexecutor.models import JobErrorRecord, JobRecord
from django_rexecutor.status import JobStatus
from tests.test_admin_helpers import fast_password_hashing, make_job, statuses  # noqa: F401

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Chromium is needed for the browser tests: "
            "apt-get install -y chromium chromium-driver (CI's .ci/run does it)."
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options
    )
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole page (the window is stretched to the page's height)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 40, 4000)))
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path


def seed() -> dict[str, Any]:
    """A small but lifelike installation: waiting, running, finished and failed jobs, a
    worker, and an hour of throughput."""
    now = timezone.now()
    waiting = [
        make_job(executor="emails.send", data={"user_id": 40 + i}, tags=["signup"])
        for i in range(3)
    ]
    running = make_job(JobStatus.EXECUTING, executor="reports.build", data={"month": "2026-10"})
    finished = make_job(JobStatus.COMPLETE, executor="emails.send", data={"user_id": 7})
    failed = make_job(
        JobStatus.DISCARDED,
        executor="billing.charge",
        attempt=3,
        max_attempts=3,
        data={"invoice": 1017, "note": "<script>alert('x')</script>"},
        metadata={"request_id": "9f1c2e", "source": "checkout"},
        tags=["billing", "eu"],
        errors=[
            ("timeout", "payment gateway did not answer within 30 s", ""),
            (
                "GatewayError",
                "card declined: insufficient funds",
                "Traceback (most recent call last):\n"
                '  File "billing/jobs.py", line 42, in execute\n'
                "    gateway.charge(invoice)\n"
                '  File "billing/gateway.py", line 88, in charge\n'
                "    raise GatewayError(reply.reason)\n"
                "billing.gateway.GatewayError: card declined: insufficient funds",
            ),
            ("GatewayError", "card declined: insufficient funds", ""),
        ],
    )
    # An hour of history for the chart: completions every minute, a few failures.
    bulk = []
    for minute in range(58):
        for _ in range(2 + (minute * 7) % 9):
            bulk.append(
                JobRecord(
                    executor="emails.send",
                    status=JobStatus.COMPLETE,
                    attempt=1,
                    completed_at=now - timedelta(minutes=minute, seconds=10),
                )
            )
    JobRecord.objects.bulk_create(bulk)
    for minute in range(3, 58, 6):
        retrying = make_job(JobStatus.RETRYABLE, executor="reports.build")
        JobErrorRecord.objects.create(
            job=retrying,
            attempt=1,
            error_type="timeout",
            message="report query exceeded 60 s",
            recorded_at=now - timedelta(minutes=minute, seconds=20),
        )
    backend = DjangoBackend()
    backend.record_heartbeat(
        "web-1:4242",
        executors=["emails.send", "reports.build"],
        concurrency=8,
        running=[running.pk],
    )
    backend.record_heartbeat("web-2:977", executors=["billing.charge"], concurrency=4)
    User.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    return {"waiting": waiting, "running": running, "finished": finished, "failed": failed}


def wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    # The dashboard replaces its panels when it refreshes, so an element found a moment ago
    # may be gone by the time it is read: look again rather than fail.
    return WebDriverWait(
        driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition)


def test_operator_session_in_a_real_browser(browser: Any, live_server: Any) -> None:
    jobs = seed()
    base = live_server.url

    # Log in.
    browser.get(f"{base}/admin/login/?next=/admin/django_rexecutor/jobrecord/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("secret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(browser, ec.presence_of_element_located((By.ID, "changelist")))

    # Filter by status through the sidebar.
    filters = browser.find_element(By.ID, "changelist-filter")
    filters.find_element(By.LINK_TEXT, "Scheduled").click()
    wait(browser, ec.url_contains("status__exact=scheduled"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 3
    assert all("Scheduled" in row.text for row in rows)

    # Cancel them all with the bulk action.
    browser.find_element(By.ID, "action-toggle").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("cancel_selected")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li")))
    assert message.text == "3 jobs cancelled."
    assert statuses(*jobs["waiting"]) == [JobStatus.CANCELLED] * 3

    # Badges follow the dark theme (the admin's theme toggle stores the choice).
    browser.get(f"{base}/admin/django_rexecutor/jobrecord/?status__exact=complete")
    badge = browser.find_element(By.CSS_SELECTOR, ".rx-badge--complete")
    light = badge.value_of_css_property("background-color")
    browser.execute_script("localStorage.setItem('theme', 'dark')")
    browser.refresh()
    badge = browser.find_element(By.CSS_SELECTOR, ".rx-badge--complete")
    dark = badge.value_of_css_property("background-color")
    assert light != dark
    assert dark.replace(" ", "") == "rgba(20,83,45,1)"  # PALETTE[COMPLETE].dark_bg
    assert PALETTE[JobStatus.COMPLETE].dark_bg == "#14532d"
    browser.execute_script("localStorage.setItem('theme', 'light')")

    # The detail page of the failed job: escaped payload, error history with traceback.
    browser.get(f"{base}/admin/django_rexecutor/jobrecord/{jobs['failed'].pk}/change/")
    page = browser.find_element(By.ID, "content-main").text
    assert "<script>alert('x')</script>" in page  # shown as text, not run
    assert "card declined: insufficient funds" in page
    tracebacks = browser.find_elements(By.CSS_SELECTOR, "pre.rx-traceback")
    assert len(tracebacks) == 1 and "GatewayError" in tracebacks[0].text
    assert browser.find_element(By.ID, "rx-rerun-button").is_displayed()
    screenshot(browser, "admin-job-detail.png")

    # The dashboard, reached from the app index.
    browser.get(f"{base}/admin/django_rexecutor/")
    browser.find_element(By.ID, "rx-dashboard-link").click()
    chart = wait(browser, ec.presence_of_element_located((By.ID, "rx-throughput-chart")))
    assert chart.is_displayed()
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect")) > 50
    workers = browser.find_element(By.ID, "rx-workers").text
    assert "web-1:4242" in workers and "web-2:977" in workers
    path = screenshot(browser, "admin-dashboard.png")
    assert path.stat().st_size > 10_000

    # The panels refresh without a page reload.
    browser.execute_script("window.rxMarker = 'same page'")
    make_job(executor="late.arrival")
    wait(
        browser,
        lambda d: "late.arrival" in d.find_element(By.ID, "rx-status-counts").text,
        timeout=25,
    )
    assert browser.execute_script("return window.rxMarker") == "same page"

    # Pause an executor from the dashboard, then resume it.
    control = "//form[input[@name='executor' and @value='late.arrival']]/button"
    wait(browser, ec.element_to_be_clickable((By.XPATH, control))).click()
    wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#rx-status-counts .rx-paused")))
    assert DjangoBackend().paused_executors() == {"late.arrival"}
    wait(browser, ec.element_to_be_clickable((By.XPATH, control))).click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messagelist"), "Resumed"))
    assert DjangoBackend().paused_executors() == set()


def test_the_workflow_page_in_a_real_browser(browser: Any, live_server: Any) -> None:
    from demo.jobs import WorkflowStepEffect as Step
    from django_rexecutor import Workflow
    from django_rexecutor.backends.values import Claim
    from django_rexecutor.job import ErrorDetails

    wf = Workflow("nightly-report")
    fetch = wf.add(Step.builder(), name="fetch")
    a = wf.add(Step.builder(), name="report-a", after=[fetch])
    b = wf.add(Step.builder(), name="report-b", after=[fetch])
    wf.add(Step.builder(), name="notify", after=[a, b], run_if="finished")
    run = wf.enqueue()
    backend = DjangoBackend()
    job = backend.claim_jobs("w", {Step.name: 1}, 1)[0]
    backend.mark_job_discarded(job.id, ErrorDetails("boom", "failed"), claim=Claim.of(job))
    User.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    base = live_server.url

    browser.get(
        f"{base}/admin/login/?next=/admin/django_rexecutor/jobrecord/{run['notify']}/change/"
    )
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("secret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # From a step's job page to its workflow's page.
    wait(browser, ec.presence_of_element_located((By.ID, "rx-workflow-link"))).click()
    graph = wait(browser, ec.presence_of_element_located((By.ID, "rx-workflow-graph")))
    layers = graph.find_elements(By.CSS_SELECTOR, "ol.rx-layer")
    steps = [
        [li.get_attribute("data-step") for li in layer.find_elements(By.CSS_SELECTOR, "li")]
        for layer in layers
    ]
    assert steps == [["fetch"], ["report-a", "report-b"], ["notify"]]
    summary = browser.find_element(By.ID, "rx-workflow-summary").text
    assert "4 steps" in summary and "1 discarded" in summary and "2 cancelled" in summary
    notify = graph.find_element(By.CSS_SELECTOR, "li[data-step=notify]")
    assert "after report-a, report-b" in notify.text
    assert notify.find_element(By.CSS_SELECTOR, ".rx-badge--scheduled")
    screenshot(browser, "workflow.png")

    # Rerun the failed step: the steps it cancelled wait for it again, and so does the
    # callback that had not started yet.
    browser.find_element(By.ID, "rx-workflow-rerun").click()
    # The previous page's message stays until the redirect lands: wait for this one's text.
    wait(
        browser,
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messagelist li"), "1 job rerun."),
    )
    assert browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text == "1 job rerun."
    assert [j.status for j in Workflow.jobs(run.workflow_id)] == [
        JobStatus.SCHEDULED, JobStatus.WAITING, JobStatus.WAITING, JobStatus.WAITING
    ]  # fmt: skip

    # Cancel the whole workflow.
    browser.find_element(By.ID, "rx-workflow-cancel").click()
    # The previous page's message stays until the redirect lands: wait for this one's text.
    wait(
        browser,
        ec.text_to_be_present_in_element(
            (By.CSS_SELECTOR, "ul.messagelist li"), "4 jobs cancelled."
        ),
    )
    assert browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text == "4 jobs cancelled."
    assert {j.status for j in Workflow.jobs(run.workflow_id)} == {JobStatus.CANCELLED}
