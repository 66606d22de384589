"""Prometheus metrics, scraped and parsed with prometheus-client's own parser: the store view
(protected by staff session or bearer token) and a real worker process's ``--metrics-port``."""

from __future__ import annotations

import socket
import urllib.request
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from demo.jobs import Outcomes, RecordEffect
from django_rexecutor.backends import get_backend
from tests.worker_support import WorkerProcess, status_of, wait_until

parser = pytest.importorskip("prometheus_client.parser")

URL = "/rexecutor/metrics"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.mark.urls("tests.urls_metrics")
@pytest.mark.django_db
def test_the_view_exposes_jobs_lag_and_workers_to_staff(admin_client) -> None:
    for _ in range(3):
        RecordEffect.builder().schedule_at(timezone.now() - timedelta(seconds=90)).enqueue()
    get_backend().record_heartbeat("w-1", executors=[RecordEffect.name], concurrency=2, running=[1])
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    got = samples(response.content.decode())
    assert got[("rexecutor_jobs", (("executor", "test.record"), ("status", "scheduled")))] == 3
    assert got[("rexecutor_jobs", (("executor", "test.outcomes"), ("status", "scheduled")))] == 0
    assert got[("rexecutor_queue_lag_seconds", (("executor", "test.record"),))] >= 89
    assert got[("rexecutor_queue_lag_seconds", (("executor", "test.outcomes"),))] == 0
    assert got[("rexecutor_live_workers", ())] == 1
    assert got[("rexecutor_worker_running_jobs", (("worker", "w-1"),))] == 1
    assert got[("rexecutor_jobs_estimated", (("status", "complete"),))] == 0


@pytest.mark.urls("tests.urls_metrics")
@pytest.mark.django_db
def test_the_view_wants_a_staff_session_or_the_token(client, django_user_model) -> None:
    assert client.get(URL).status_code == 403
    user = django_user_model.objects.create_user("plain", password="x")
    client.force_login(user)
    assert client.get(URL).status_code == 403
    client.logout()
    with override_settings(REXECUTOR={"METRICS_TOKEN": "s3cret"}):
        assert client.get(URL, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get(URL, headers={"Authorization": "Basic s3cret"}).status_code == 403
    # No token configured: a bearer header opens nothing.
    assert client.get(URL, headers={"Authorization": "Bearer "}).status_code == 403


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_serves_its_own_metrics(manage_py, subprocess_env) -> None:
    port = _free_port()
    worker = WorkerProcess(
        manage_py, subprocess_env, "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"
    )
    try:
        worker.wait_for_output("started")
        done = [RecordEffect.enqueue({"label": str(n)}) for n in range(3)]
        failed = Outcomes.enqueue({"outcome": "panic"})
        wait_until(lambda: all(status_of(j) == "complete" for j in done), 20, worker)
        wait_until(lambda: status_of(failed) == "retryable", 20, worker)

        def scrape() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return samples(r.read().decode())

        wait_until(
            lambda: (
                scrape().get(
                    (
                        "rexecutor_worker_attempts_finished_total",
                        (("executor", "test.outcomes"), ("outcome", "retryable")),
                    )
                )
                == 1
            ),
            10,
            worker,
        )
        got = scrape()
        record = (("executor", "test.record"),)
        assert got[("rexecutor_worker_attempts_started_total", record)] == 3
        assert (
            got[
                (
                    "rexecutor_worker_attempts_finished_total",
                    (("executor", "test.record"), ("outcome", "complete")),
                )
            ]
            == 3
        )
        assert got[("rexecutor_worker_attempt_duration_seconds_count", record)] == 3
        assert got[("rexecutor_worker_running_attempts", ())] == 0
        assert got[("rexecutor_worker_claim_duration_seconds_count", ())] >= 1
        assert got[("rexecutor_worker_claimed_jobs_total", ())] == 4
        [info] = [k for k in got if k[0] == "rexecutor_worker_info"]
        assert f"Worker {dict(info[1])['worker']} started" in worker.output
        assert worker.stop() == 0, worker.output
    finally:
        worker.kill()
