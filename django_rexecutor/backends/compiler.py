"""Kept for imports of its old path: the compiler is ``backends.django.compiler``."""

from __future__ import annotations

from .django.compiler import MATCH_ALL, MATCH_NONE, compile_query

__all__ = ["MATCH_ALL", "MATCH_NONE", "compile_query"]
