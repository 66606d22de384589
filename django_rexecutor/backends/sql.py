"""Temporary: the admin's names until it reads them from ``models``."""

from __future__ import annotations

from .django.rows import JSON_FIELDS, TIMESTAMPS

__all__ = ["JSON_FIELDS", "TIMESTAMPS"]
