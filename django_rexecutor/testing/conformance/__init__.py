"""The conformance suite: the behaviour every backend must show, as pytest test mixins.

``BackendConformanceTests`` holds every part; subclass it in a test module (the name must start
with ``Test``) and implement ``make_backend`` and ``delete_behind_the_backend``::

    class TestMyBackend(BackendConformanceTests):
        def make_backend(self):
            return MyBackend()

        def delete_behind_the_backend(self, backend, job_id):
            backend.storage.delete(job_id)

A backend that implements only part of the contract so far adopts the parts one by one: each
mixin below stands on ``ConformanceBase`` (hooks, the ``backend`` fixture, shared helpers) and
nothing else::

    class TestMyBackendSoFar(EnqueueConformance, ClaimConformance, ResultConformance): ...

A database-backed subclass carries the pytest-django marks it needs; the suite works from
other threads, so it needs committed rows: ``pytest.mark.django_db(transaction=True)``.

The suite holds all 26 backend cases of rexecutor (adapted where our rules are stricter: results
are only written for a job that was claimed first) and one test per rexecutor bug we fix, plus
our own additions (fencing, cancel requests, heartbeats and rescue, claiming, bulk changes) and
the operations cron, the pruner and the worker stand on (cron ticks, locks, prune counts, the
notifier). It only talks to the backend through the ``Backend`` interface, so it fits any
storage.
"""

from __future__ import annotations

from .base import ALPHA, BETA, MISSING_ID, PROMPTLY, ConformanceBase
from .changes import ChangeConformance
from .claims import ClaimConformance
from .cron import CronConformance
from .enqueue import EnqueueConformance
from .limits import LimitConformance
from .locks import LockConformance
from .notifications import NotificationConformance
from .observability import ObservabilityConformance
from .pruning import PruneConformance
from .query import QueryConformance
from .results import ResultConformance
from .workers import WorkerConformance
from .workflows import WorkflowConformance

__all__ = [
    "ALPHA",
    "BETA",
    "MISSING_ID",
    "PROMPTLY",
    "BackendConformanceTests",
    "ChangeConformance",
    "ClaimConformance",
    "ConformanceBase",
    "CronConformance",
    "EnqueueConformance",
    "LimitConformance",
    "LockConformance",
    "NotificationConformance",
    "ObservabilityConformance",
    "PruneConformance",
    "QueryConformance",
    "ResultConformance",
    "WorkerConformance",
    "WorkflowConformance",
]


class BackendConformanceTests(
    EnqueueConformance,
    ClaimConformance,
    ResultConformance,
    ChangeConformance,
    QueryConformance,
    PruneConformance,
    WorkerConformance,
    NotificationConformance,
    CronConformance,
    LockConformance,
    ObservabilityConformance,
    WorkflowConformance,
    LimitConformance,
):
    """Every part of the suite; a subclass named ``Test…`` implements ``make_backend`` and
    ``delete_behind_the_backend``."""
