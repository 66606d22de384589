"""The Django admin for jobs: list, read-only detail with error history, rerun and cancel
actions, and the dashboard (``reverse("admin:django_rexecutor_dashboard")``)."""

from __future__ import annotations

from .jobs import JobErrorInline, JobRecordAdmin

__all__ = ["JobErrorInline", "JobRecordAdmin"]
