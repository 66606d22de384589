"""The admin's progress bar in a real browser (headless Chromium): running jobs show how far
they got, in the job list and on the detail page. The list's screenshot is saved in
``artifacts/admin-progress.png``; docs/images/admin-progress.png is refreshed from it by hand."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_rexecutor.status import JobStatus
from tests.test_admin_browser import browser, screenshot, wait  # noqa: F401
from tests.test_admin_helpers import fast_password_hashing, make_job  # noqa: F401

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_running_jobs_show_a_progress_bar(browser: Any, live_server: Any) -> None:  # noqa: F811
    now = timezone.now()
    reports = [
        make_job(
            JobStatus.EXECUTING,
            executor="reports.build",
            data={"month": f"2026-{m:02d}"},
            progress=progress,
            progress_note=note,
            progress_at=now,
        )
        for m, progress, note in [
            (9, 0.42, "page 42 of 100"),
            (10, 0.8, "page 80 of 100"),
            (11, 0.05, "page 5 of 100"),
        ]
    ]
    make_job(JobStatus.EXECUTING, executor="emails.send", data={"user_id": 7})
    make_job(
        JobStatus.COMPLETE,
        executor="reports.build",
        data={"month": "2026-08"},
        progress=1.0,
        progress_note="page 100 of 100",
        progress_at=now,
    )
    User.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    base = live_server.url
    browser.get(f"{base}/admin/login/?next=/admin/django_rexecutor/jobrecord/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("secret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(browser, ec.presence_of_element_located((By.ID, "changelist")))

    bars = browser.find_elements(By.CSS_SELECTOR, "#result_list .rx-progress-bar")
    fills = browser.find_elements(By.CSS_SELECTOR, "#result_list .rx-progress-fill")
    assert len(bars) == len(fills) == 4  # three running reports and the completed one
    widths = sorted(
        round(f.size["width"] / b.size["width"], 2) for f, b in zip(fills, bars, strict=True)
    )
    assert widths == pytest.approx([0.05, 0.42, 0.8, 1.0], abs=0.03)
    # The note is the bar's tooltip; a job that never reported shows a dash.
    titles = {
        e.get_attribute("title") for e in browser.find_elements(By.CSS_SELECTOR, ".rx-progress")
    }
    assert "page 42 of 100" in titles
    browser.find_element(By.ID, "toggle-nav-sidebar").click()  # room for the columns
    screenshot(browser, "admin-progress.png")

    browser.get(f"{base}/admin/django_rexecutor/jobrecord/{reports[0].pk}/change/")
    page = browser.find_element(By.ID, "content-main").text
    assert "42%" in page and "page 42 of 100" in page
