"""A table the demo and test executors write to, so tests can count real side effects."""

from __future__ import annotations

from django.db import models


class SideEffect(models.Model):
    """One row per side effect of a job attempt (deliberately not unique: duplicates must show)."""

    job_id = models.BigIntegerField()
    attempt = models.IntegerField()
    label = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["job_id"], name="demo_sideeffect_job_idx")]

    def __str__(self) -> str:
        return f"{self.label or 'effect'} of job {self.job_id} (attempt {self.attempt})"
