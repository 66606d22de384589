"""Django signals sent around a job's life. Receivers get ``sender`` = the executor class.

* ``job_enqueued(job_id, job)`` — after ``enqueue`` (``job`` is the ``EnqueuableJob``).
* ``job_started(job)`` — a worker is about to run an attempt.
* ``job_finished(job, outcome, duration)`` — an attempt ended; ``outcome`` is one of
  ``"complete"``, ``"retryable"``, ``"discarded"``, ``"cancelled"``, ``"snoozed"``.

The worker sends ``job_started`` and ``job_finished`` robustly: a receiver that raises is logged
(``django_rexecutor.worker``, with the receiver's name and the job) and the others still run;
it cannot stop the worker or the job."""

from __future__ import annotations

from django.dispatch import Signal

job_enqueued = Signal()
job_started = Signal()
job_finished = Signal()
