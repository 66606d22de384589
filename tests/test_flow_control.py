"""Flow control's parts in one process: ``RateLimit`` and executor attributes, partition keys
stored at enqueue, ``REXECUTOR["LIMITS"]`` and its system checks, ``Executor.pause()``, the
pause commands and the dashboard's pause control (permission, CSRF). The limits across real
worker processes are in ``test_flow_control_workers.py``; the backend rules in the
conformance suite (``LimitConformance``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from django_rexecutor import ConfigurationError, Executor, InMemoryBackend, RateLimit
from django_rexecutor.checks import check_limits
from django_rexecutor.limits import Limits, limits_of, partition_key
from django_rexecutor.models import JobRecord, PausedExecutorRecord
from django_rexecutor.registry import unregister
from django_rexecutor.worker import Worker
from tests.test_admin_helpers import fast_password_hashing, staff_user  # noqa: F401

DASHBOARD = reverse("admin:django_rexecutor_dashboard")
PAUSE = reverse("admin:django_rexecutor_pause")


class PerAccount(Executor):
    name = "flow_test.per_account"
    global_concurrency = 2
    rate_limit = RateLimit(allowed=60, period=timedelta(minutes=1))
    partition_by = ("data.account", "metadata.region")

    def execute(self, job: Any) -> None:
        pass


class Plain(Executor):
    name = "flow_test.plain"

    def execute(self, job: Any) -> None:
        pass


# -- values -------------------------------------------------------------------------------------
def test_rate_limit_takes_a_timedelta_or_seconds() -> None:
    assert RateLimit(allowed=3, period=2).period == timedelta(seconds=2)
    assert RateLimit(3, timedelta(minutes=1)) == RateLimit(3, 60.0)


@pytest.mark.parametrize(
    ("allowed", "period"), [(0, 1), (True, 1), (1.5, 1), (3, 0), (3, -1), (3, "1m")]
)
def test_a_bad_rate_limit_names_the_value(allowed: Any, period: Any) -> None:
    with pytest.raises(ConfigurationError, match="RateLimit"):
        RateLimit(allowed, period)


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("global_concurrency", 0, "Bad.global_concurrency must be a positive int"),
        ("rate_limit", 5, "Bad.rate_limit must be a RateLimit"),
        ("partition_by", "account_id", "Bad.partition_by: 'account_id' is not a partition path"),
        ("partition_by", "data.", "is not a partition path"),
    ],
)
def test_bad_class_limits_fail_at_class_definition(
    attribute: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        type("Bad", (Executor,), {"name": "flow_test.bad", attribute: value, "execute": _run})
    unregister("flow_test.bad")


def _run(self: Any, job: Any) -> None:
    pass


def test_partition_keys_are_equal_for_equal_values_only() -> None:
    paths = ("data.account",)
    one = partition_key(paths, {"account": 7, "other": 1}, None)
    assert one == partition_key(paths, {"account": 7}, {"x": 1})
    assert one != partition_key(paths, {"account": "7"}, None)
    assert partition_key((), {"account": 7}, None) == ""
    # A missing value is a partition of its own (null), not an error.
    assert partition_key(paths, None, None) == partition_key(paths, {"other": 1}, None)


# -- settings override class attributes -------------------------------------------------------
def test_limits_of_reads_class_attributes() -> None:
    assert limits_of(PerAccount) == Limits(
        2, RateLimit(60, 60), ("data.account", "metadata.region")
    )
    assert limits_of(Plain) == Limits()
    assert not limits_of(Plain).active


def test_the_limits_setting_overrides_class_attributes() -> None:
    limits = {
        PerAccount.name: {"global_concurrency": 5, "rate_limit": None},
        Plain.name: {"rate_limit": {"allowed": 10, "period": 1}, "partition_by": "data.a"},
    }
    with override_settings(REXECUTOR={"LIMITS": limits}):
        assert limits_of(PerAccount) == Limits(5, None, ("data.account", "metadata.region"))
        assert limits_of(Plain) == Limits(None, RateLimit(10, 1), ("data.a",))
        assert check_limits() == []


@pytest.mark.django_db
def test_a_worker_claims_with_the_limits_of_its_executors() -> None:
    with override_settings(REXECUTOR={"LIMITS": {Plain.name: {"global_concurrency": 3}}}):
        worker = Worker([PerAccount.name, Plain.name], backend=InMemoryBackend())
    assert worker.flow_limits == {
        PerAccount.name: limits_of(PerAccount),
        Plain.name: Limits(global_concurrency=3),
    }
    assert worker.claims.limits == worker.flow_limits


@pytest.mark.django_db
def test_the_partition_is_stored_at_enqueue() -> None:
    job_id = PerAccount.enqueue({"account": 42}, metadata={"region": "eu"})
    expected = partition_key(PerAccount.partition_by, {"account": 42}, {"region": "eu"})  # type: ignore[arg-type]
    assert JobRecord.objects.get(pk=job_id).partition_key == expected
    [bulk] = PerAccount.enqueue_many([{"data": {"account": 42}, "metadata": {"region": "eu"}}])
    assert JobRecord.objects.get(pk=bulk).partition_key == expected
    assert JobRecord.objects.get(pk=Plain.enqueue({"account": 42})).partition_key == ""
    with override_settings(REXECUTOR={"LIMITS": {Plain.name: {"partition_by": "data.account"}}}):
        later = Plain.enqueue({"account": 42})
    assert JobRecord.objects.get(pk=later).partition_key == partition_key(
        ("data.account",), {"account": 42}, None
    )


# -- system checks ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("limits", "ids"),
    [
        ([("x", 1)], ["django_rexecutor.E401"]),
        ({Plain.name: 3}, ["django_rexecutor.E401"]),
        ({Plain.name: {"concurrency": 3}}, ["django_rexecutor.E402"]),
        ({Plain.name: {"global_concurrency": 0}}, ["django_rexecutor.E403"]),
        ({Plain.name: {"global_concurrency": "2"}}, ["django_rexecutor.E403"]),
        ({Plain.name: {"rate_limit": {"allowed": 3}}}, ["django_rexecutor.E404"]),
        ({Plain.name: {"rate_limit": {"allowed": 3, "period": 0}}}, ["django_rexecutor.E404"]),
        ({Plain.name: {"partition_by": "account"}}, ["django_rexecutor.E405"]),
        ({"no.such.executor": {"global_concurrency": 1}}, ["django_rexecutor.W401"]),
    ],
)
def test_bad_limits_settings_are_reported(limits: Any, ids: list[str]) -> None:
    with override_settings(REXECUTOR={"LIMITS": limits}):
        messages = check_limits()
    assert [m.id for m in messages] == ids
    assert all(m.msg.startswith('REXECUTOR["LIMITS"]') for m in messages)


def test_the_limits_key_is_a_known_setting() -> None:
    from django_rexecutor.checks import check_settings

    with override_settings(REXECUTOR={"LIMITS": {Plain.name: {"global_concurrency": 1}}}):
        assert check_settings() == []


# -- pause and resume: the class API and the commands -----------------------------------------
@pytest.mark.django_db
def test_an_executor_pauses_and_resumes_itself() -> None:
    assert not Plain.is_paused()
    Plain.pause()
    assert Plain.is_paused() and not PerAccount.is_paused()
    assert PausedExecutorRecord.objects.filter(executor=Plain.name).exists()
    Plain.resume()
    assert not Plain.is_paused()


def test_pause_has_async_twins() -> None:
    backend = InMemoryBackend()

    async def scenario() -> tuple[bool, bool]:
        await Plain.apause(backend=backend)
        paused = await Plain.ais_paused(backend=backend)
        await Plain.aresume(backend=backend)
        return paused, await Plain.ais_paused(backend=backend)

    assert asyncio.run(scenario()) == (True, False)


@pytest.mark.django_db
def test_the_commands_pause_and_resume_named_executors(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("rexecutor_pause", Plain.name, PerAccount.name)
    assert Plain.is_paused() and PerAccount.is_paused()
    assert f"{Plain.name}: paused" in capsys.readouterr().out
    call_command("rexecutor_resume", Plain.name)
    assert not Plain.is_paused() and PerAccount.is_paused()
    assert f"{Plain.name}: running" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_commands_take_all() -> None:
    from django_rexecutor import registry

    call_command("rexecutor_pause", "--all")
    assert {r.executor for r in PausedExecutorRecord.objects.all()} == set(registry.all_executors())
    call_command("rexecutor_resume", "--all")
    assert not PausedExecutorRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no.such.executor"], "Unknown executor name(s): 'no.such.executor'. Registered:"),
        ([], "Name the executors to pause, or give --all"),
        (["--all", Plain.name], "Name the executors to pause, or give --all"),
    ],
)
def test_the_pause_command_refuses_unclear_names(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("rexecutor_pause", *args)
    assert message in str(raised.value)
    assert not PausedExecutorRecord.objects.exists()


# -- the dashboard --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_dashboard_pauses_and_resumes_with_the_permission() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user("pauser", "view_jobrecord", "pause_executor"))
    Plain.enqueue()
    page = client.get(DASHBOARD).text
    assert 'name="action" value="pause"' in page
    assert 'name="csrfmiddlewaretoken"' in page
    token = client.cookies["csrftoken"].value
    response = client.post(
        PAUSE, {"executor": Plain.name, "action": "pause", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and Plain.is_paused()
    page = client.get(DASHBOARD).text
    assert 'class="rx-paused"' in page and 'value="resume"' in page
    client.post(PAUSE, {"executor": Plain.name, "action": "resume", "csrfmiddlewaretoken": token})
    assert not Plain.is_paused()


@pytest.mark.django_db
def test_the_dashboard_shows_paused_executors_without_jobs_to_viewers() -> None:
    client = Client()
    client.force_login(staff_user("viewer", "view_jobrecord"))
    Plain.pause()
    page = client.get(DASHBOARD).text
    assert Plain.name in page and 'class="rx-paused"' in page
    assert 'value="resume"' not in page  # no control without the permission


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_change_the_pause_state() -> None:
    client = Client()
    client.force_login(staff_user("viewer", "view_jobrecord"))
    assert client.post(PAUSE, {"executor": Plain.name, "action": "pause"}).status_code == 403
    assert not Plain.is_paused()
    Plain.pause()
    assert client.post(PAUSE, {"executor": Plain.name, "action": "resume"}).status_code == 403
    assert Plain.is_paused()


@pytest.mark.django_db
def test_the_pause_control_needs_post_and_a_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user("pauser", "view_jobrecord", "pause_executor"))
    assert client.get(PAUSE, {"executor": Plain.name, "action": "pause"}).status_code == 405
    assert client.post(PAUSE, {"executor": Plain.name, "action": "pause"}).status_code == 403
    assert not Plain.is_paused()


# -- the limit row's lock ------------------------------------------------------------------------
@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_claim_that_loses_the_race_to_create_the_limit_row_still_locks_it() -> None:
    import threading
    import time

    from django.db import DatabaseError, connections, transaction

    from django_rexecutor import DjangoBackend
    from django_rexecutor.models import ExecutorLimitRecord

    backend = DjangoBackend()
    first_in = threading.Event()
    release_first = threading.Event()
    second_holds = threading.Event()
    release_second = threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with transaction.atomic():
            backend._lock_limit("flow_test.race")  # creates the row
            first_in.set()
            release_first.wait(10)
        connections.close_all()

    def second() -> None:
        first_in.wait(10)
        with transaction.atomic():
            backend._lock_limit("flow_test.race")  # waits for the first, loses the insert
            second_holds.set()
            release_second.wait(10)
        connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_in.wait(10)
    time.sleep(0.3)  # the second is now blocked on the first's insert of the row
    release_first.set()
    assert second_holds.wait(10)
    try:
        with transaction.atomic():
            rows = ExecutorLimitRecord.objects.select_for_update(nowait=True)
            list(rows.filter(executor="flow_test.race"))
        seen["locked"] = False
    except DatabaseError:
        seen["locked"] = True
    release_second.set()
    for t in threads:
        t.join(10)
    assert seen == {"locked": True}
