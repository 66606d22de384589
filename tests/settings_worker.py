"""Settings of worker subprocesses started by the worker tests: the test project's settings,
with ``REXECUTOR`` keys overridden from the JSON object in ``REXECUTOR_TEST_OVERRIDES`` (e.g.
a short heartbeat and rescue threshold for the kill -9 test), and ``CONN_MAX_AGE`` of the default
database from ``REXECUTOR_TEST_CONN_MAX_AGE`` (``none`` for persistent connections), and its
``NAME`` from ``REXECUTOR_TEST_WORKER_DB_NAME`` (the chaos suite's PgBouncer run points workers
at a session-mode alias while the test process uses transaction pooling)."""

from __future__ import annotations

import json
import os

from testproject.settings import *  # noqa: F403
from testproject.settings import DATABASES, REXECUTOR

REXECUTOR = {**REXECUTOR, **json.loads(os.environ.get("REXECUTOR_TEST_OVERRIDES") or "{}")}

_conn_max_age = os.environ.get("REXECUTOR_TEST_CONN_MAX_AGE")
if _conn_max_age:
    DATABASES["default"]["CONN_MAX_AGE"] = None if _conn_max_age == "none" else int(_conn_max_age)

_worker_db_name = os.environ.get("REXECUTOR_TEST_WORKER_DB_NAME")
if _worker_db_name:
    DATABASES["default"]["NAME"] = _worker_db_name

# A worker whose host clock is off: ``REXECUTOR_TEST_CLOCK_SHIFT`` seconds are added to
# ``time.time()`` and ``django.utils.timezone.now()`` (before any model captures the latter as a
# default). The database's clock, PostgreSQL's or SQLite's own, is not shifted.
_clock_shift = float(os.environ.get("REXECUTOR_TEST_CLOCK_SHIFT") or 0)
if _clock_shift:
    import time
    from datetime import timedelta

    from django.utils import timezone

    _host_time, _host_now = time.time, timezone.now
    time.time = lambda: _host_time() + _clock_shift
    timezone.now = lambda: _host_now() + timedelta(seconds=_clock_shift)

# OpenTelemetry spans of the worker, one JSON line each, appended to this file (tests/test_otel.py).
_otel_spans = os.environ.get("REXECUTOR_TEST_OTEL_SPANS")
if _otel_spans:
    from tests.otel_support import install as _install_otel

    _install_otel(_otel_spans)
