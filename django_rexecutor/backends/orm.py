"""The path settings and docs name the Django backend by
(``django_rexecutor.backends.orm.DjangoBackend``); it lives in ``backends.django``."""

from __future__ import annotations

from .django import DjangoBackend

__all__ = ["DjangoBackend"]
