"""How the admin reaches the jobs it shows: through the backend that owns their rows, so its
actions and dashboard apply the same rules as the Python API."""

from __future__ import annotations

from ..backends import get_backend
from ..backends.orm import DjangoBackend


def admin_backend(alias: str) -> DjangoBackend:
    """The backend that owns the rows the admin shows: the configured one when it stores
    jobs in the database (a ``DjangoBackend`` or a subclass), else a plain ``DjangoBackend``
    (e.g. while tests install an in-memory backend)."""
    backend = get_backend()
    if isinstance(backend, DjangoBackend):
        return backend.using(alias)
    return DjangoBackend(alias)
