"""Who a worker is and what it runs: its label, its per-process identity, its executors."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable

from .. import registry
from ..exceptions import ConfigurationError
from ..executor import Executor

#: Longest worker id the workers table and ``claimed_by`` hold.
MAX_WORKER_ID = 255
_INCARNATION_CHARS = 8


def default_worker_name() -> str:
    """The label of a worker started without ``--name``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def incarnation_id(name: str) -> str:
    """A worker's identity: its name (a label, which restarts and other workers may share)
    plus a random part, so no two processes ever claim under the same id and a new process
    can never make an older one's jobs look alive."""
    if len(name) > MAX_WORKER_ID - _INCARNATION_CHARS - 1:
        raise ConfigurationError(
            f"Worker name {name[:40]!r}... is {len(name)} characters long; use at most "
            f"{MAX_WORKER_ID - _INCARNATION_CHARS - 1} (the worker adds "
            f"{_INCARNATION_CHARS + 1} to make its id unique)."
        )
    return f"{name}@{secrets.token_hex(_INCARNATION_CHARS // 2)}"


def resolve_executors(
    names: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> dict[str, type[Executor]]:
    """The executors a worker runs: ``names`` (default: all registered) minus ``exclude``.
    Unknown names are a ``ConfigurationError`` listing the registered ones."""
    known = registry.all_executors()
    wanted = list(names or [])
    excluded = list(exclude)
    unknown = sorted({n for n in [*wanted, *excluded] if n not in known})
    if unknown:
        raise ConfigurationError(
            f"Unknown executor name(s): {', '.join(map(repr, unknown))}. Registered: "
            f"{', '.join(known) or 'none (define executors in the jobs.py of an installed app)'}."
        )
    chosen = {n: known[n] for n in (wanted or known) if n not in set(excluded)}
    if not chosen:
        raise ConfigurationError(
            "This worker would run no executor: register some in an app's jobs.py or adjust "
            "--executor/--exclude."
        )
    return chosen
