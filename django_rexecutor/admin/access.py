"""How the admin reaches the jobs it shows: through the backend that owns their rows, so its
actions and dashboard apply the same rules as the Python API."""

from __future__ import annotations

from ..backends import Backend, for_database


def admin_backend(alias: str) -> Backend:
    """The backend that owns the rows the admin shows on database ``alias``: the configured
    one when it keeps its jobs in Django's databases, else the built-in Django backend (e.g.
    while tests install an in-memory backend)."""
    return for_database(alias)
