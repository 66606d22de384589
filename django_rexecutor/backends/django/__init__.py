"""The Django backend: jobs in Django models, one ``engines`` module per database vendor."""

from __future__ import annotations

from .backend import DjangoBackend

__all__ = ["DjangoBackend"]
