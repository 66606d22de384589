"""Who a worker is and what it runs (``worker.identity``), without starting one."""

from __future__ import annotations

import os
import socket

import pytest

from django_rexecutor.exceptions import ConfigurationError
from django_rexecutor.worker import worker as worker_module
from django_rexecutor.worker.identity import (
    MAX_WORKER_ID,
    default_worker_name,
    incarnation_id,
    resolve_executors,
)
from tests.worker_parts_support import Gate, Quick


def test_the_default_name_is_host_and_pid() -> None:
    assert default_worker_name() == f"{socket.gethostname()}:{os.getpid()}"


def test_each_incarnation_of_a_name_has_its_own_id() -> None:
    ids = {incarnation_id("web-1") for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("web-1@") and len(i) == len("web-1@") + 8 for i in ids)


def test_the_longest_name_still_fits_the_workers_table() -> None:
    assert len(incarnation_id("w" * 246)) == MAX_WORKER_ID
    with pytest.raises(ConfigurationError, match="use at most 246"):
        incarnation_id("w" * 247)


def test_executors_are_chosen_by_name_minus_the_excluded_ones() -> None:
    assert resolve_executors([Quick.name, Gate.name], exclude=[Gate.name]) == {Quick.name: Quick}
    everything = resolve_executors()
    assert everything[Quick.name] is Quick and everything[Gate.name] is Gate
    assert Quick.name not in resolve_executors(exclude=[Quick.name])


def test_unknown_names_are_listed_with_the_registered_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"Unknown executor name\(s\): 'nope', 'nor'"):
        resolve_executors(["nope"], exclude=["nor"])
    with pytest.raises(ConfigurationError, match=f"Registered: .*{Quick.name}"):
        resolve_executors(["nope"])


def test_a_worker_with_no_executor_left_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="would run no executor"):
        resolve_executors([Quick.name], exclude=[Quick.name])


def test_the_names_stay_importable_from_the_worker_module() -> None:
    from django_rexecutor.worker import default_worker_name as exported

    assert exported is default_worker_name
    assert worker_module.resolve_executors is resolve_executors
    assert worker_module.incarnation_id is incarnation_id
