"""pytest plugin of django-rexecutor, registered through the ``pytest11`` entry point.

Fixtures:

* ``rexecutor_memory_backend`` — a fresh ``InMemoryBackend`` installed as the configured
  backend for one test (``Executor.enqueue``, ``assert_enqueued``, ``drain_jobs`` use it).
* ``rexecutor_backend`` — the backend the code under test uses (configured or installed).

Nothing from Django or django_rexecutor is imported when the plugin loads: pytest loads it before
pytest-django has configured settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..backends.memory import InMemoryBackend

# The conformance suite is plain asserts in a library module: let pytest explain its failures.
pytest.register_assert_rewrite("django_rexecutor.testing.conformance")


@pytest.fixture
def rexecutor_memory_backend() -> Iterator[InMemoryBackend]:
    """An empty in-memory backend that every part of django-rexecutor uses during one test."""
    from ..backends import use_backend
    from ..backends.memory import InMemoryBackend

    backend = InMemoryBackend()
    with use_backend(backend):
        yield backend


@pytest.fixture
def rexecutor_backend() -> Backend:
    """The backend in use: the one installed for this test, else ``REXECUTOR["BACKEND"]``."""
    from ..backends import get_backend

    return get_backend()
