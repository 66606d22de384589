"""The claim thread: the claim round trip on a thread and database connection of its own, so
that the worker's main thread keeps starting buffered jobs and handing completions over while
the database picks the next batch.

One request at a time: the main thread (``Claimer``) asks, the thread claims, writes the
buffered jobs' list (``Backend.record_claimed_ahead``) and hands the reply back, waking the
main thread. Only the main thread touches the buffer and the running attempts; the thread
only talks to the database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..backends.base import Backend
from ..job import Job
from .connections import DB_ERRORS, drop_connection


@dataclass(frozen=True)
class ClaimRequest:
    """What to claim: ``wanted`` per executor, ``limit`` in all; ``free`` of them for slots
    free when asked, the rest ahead; ``buffered``: the ids already waiting in the buffer."""

    wanted: Mapping[str, int]
    limit: int
    free: int
    buffered: frozenset[int]


@dataclass
class ClaimReply:
    """The jobs a request claimed (sorted in start order) and what went wrong: ``claim_error``
    (the claim may have committed unseen), ``record_error`` (claimed, but the buffer's list
    not written); ``recorded``: the ids written as claimed ahead, if written."""

    request: ClaimRequest
    jobs: list[Job] = field(default_factory=list)
    seconds: float = 0.0
    claim_error: BaseException | None = None
    record_error: BaseException | None = None
    recorded: frozenset[int] | None = None


class ClaimThread:
    """Runs ``round_trip`` for each request in a daemon thread; sets ``wake`` on each reply."""

    def __init__(
        self,
        backend: Backend,
        round_trip: Callable[[ClaimRequest], ClaimReply],
        wake: threading.Event,
    ) -> None:
        self.backend = backend
        self._round_trip = round_trip
        self._wake = wake
        self._request: ClaimRequest | None = None
        self._reply: ClaimReply | None = None
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rexecutor-claims", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A request is out, or its reply not taken yet."""
        with self._changed:
            return self._request is not None or self._reply is not None

    def submit(self, request: ClaimRequest) -> None:
        with self._changed:
            assert self._request is None and self._reply is None, "one request at a time"
            self._request = request
            self._changed.notify_all()

    def take_reply(self) -> ClaimReply | None:
        with self._changed:
            reply, self._reply = self._reply, None
            return reply

    def stop(self, timeout: float = 30.0) -> ClaimReply | None:
        """Let a request in flight end, stop the thread; returns its reply, if not taken."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return self.take_reply()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._request is None and not self._stopping:
                    self._changed.wait()
                request = self._request
                if request is None:
                    break
            reply = self._round_trip(request)
            if isinstance(reply.claim_error, DB_ERRORS) or isinstance(
                reply.record_error, DB_ERRORS
            ):
                drop_connection(self.backend)
            with self._changed:
                self._request = None
                self._reply = reply
            self._wake.set()
        drop_connection(self.backend)
