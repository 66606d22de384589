"""``manage.py rexecutor_status``: counts, lag, failures of the last hour and live workers, as
text or JSON, refreshed with ``--watch``; exit 1 past a threshold, 2 on a usage or store error."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from demo.jobs import Outcomes, RecordEffect
from django_rexecutor.backends import get_backend
from django_rexecutor.backends.values import Claim
from django_rexecutor.job import ErrorDetails


def status(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("rexecutor_status", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def discard_one() -> int:
    backend = get_backend()
    job_id = Outcomes.enqueue({"outcome": "panic"})
    [job] = backend.claim_jobs("w", {Outcomes.name: 1}, 1)
    assert backend.mark_job_discarded(job_id, ErrorDetails("panic", "x"), claim=Claim.of(job))
    return job_id


@pytest.mark.django_db
def test_it_shows_counts_lag_and_live_workers() -> None:
    RecordEffect.builder().schedule_at(timezone.now() - timedelta(minutes=2)).enqueue()
    RecordEffect.enqueue({})
    discard_one()
    get_backend().record_heartbeat("w-1", executors=[RecordEffect.name], concurrency=4, running=[7])
    code, text = status()
    assert code == 0
    [row] = [line for line in text.splitlines() if line.startswith("test.record ")]
    cells = row.split()
    assert cells[1] == "2"  # scheduled
    # Columns: executor, the statuses (… discarded, waiting), lag, discarded in the hour.
    assert cells[8].endswith("s") and float(cells[8][:-1]) >= 119  # lag of the older one
    [outcomes] = [line for line in text.splitlines() if line.startswith("test.outcomes ")]
    assert outcomes.split()[6] == "1" and outcomes.split()[9] == "1"  # discarded, in the hour
    assert "Live workers: 1" in text
    assert "w-1 on" in text and "running 1/4: 7" in text


@pytest.mark.django_db
def test_json_output_and_the_thresholds() -> None:
    RecordEffect.builder().schedule_at(timezone.now() - timedelta(minutes=2)).enqueue()
    discard_one()
    code, text = status("--json")
    data = json.loads(text)
    assert code == 0 and data["healthy"]
    record = data["executors"]["test.record"]
    assert record["counts"]["scheduled"] == 1 and record["lag_seconds"] >= 119
    assert data["discarded_last_hour"] == 1
    assert data["workers"] == []
    code, text = status("--json", "--max-lag", "60")
    data = json.loads(text)
    assert code == 1 and not data["healthy"]
    assert data["problems"] == [f"test.record: lag {record['lag_seconds']:.1f}s exceeds 60s"] or (
        data["problems"][0].startswith("test.record: lag")
    )
    assert status("--max-lag", "3600")[0] == 0
    code, text = status("--max-discarded-last-hour", "0")
    assert code == 1 and "1 job(s) discarded in the last hour exceed 0" in text
    assert status("--max-discarded-last-hour", "1")[0] == 0


@pytest.mark.django_db
def test_watch_refreshes_until_interrupted(monkeypatch) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("django_rexecutor.management.commands.rexecutor_status.time.sleep", sleep)
    code, text = status("--watch", "0.5", "--json")
    assert code == 0 and sleeps == [0.5, 0.5]
    assert len(text.strip().splitlines()) == 2  # two refreshes (Ctrl-C in the second wait)


def test_usage_and_store_errors_exit_2(monkeypatch) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("rexecutor_status", "--watch", "0")
    assert raised.value.returncode == 2

    def broken(*args, **kwargs):
        raise RuntimeError("no database")

    monkeypatch.setattr("django_rexecutor.management.commands.rexecutor_status.get_backend", broken)
    with pytest.raises(CommandError, match="Cannot read the job store: RuntimeError") as raised:
        call_command("rexecutor_status")
    assert raised.value.returncode == 2
