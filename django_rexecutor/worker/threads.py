"""The worker's long-lived threads: a fixed pool for sync jobs, one event loop for async ones,
and the means to interrupt a sync job that overran its time or was cancelled.

The pool threads are daemons started once, so no thread is started per job and a job stuck in
C code (which Python cannot interrupt) never keeps the process from exiting."""

from __future__ import annotations

import asyncio
import ctypes
import queue
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from .execution import JobInterrupted


class SyncPool:
    """``size`` daemon threads running submitted callables in order (callables must not raise)."""

    def __init__(self, size: int, name: str = "rexecutor-job") -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self._queue.put(task)

    def shutdown(self) -> None:
        """Ask idle threads to stop; busy ones finish their job first (they are daemons)."""
        for _ in self._threads:
            self._queue.put(None)


class EventLoopThread:
    """One asyncio event loop in its own daemon thread, for every ``async def`` executor."""

    def __init__(self, name: str = "rexecutor-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, wait: float = 2.0) -> None:
        """Stop the loop and, once its thread has left it (up to ``wait`` seconds), close it:
        a loop left running in a daemon thread is finalised by the interpreter's exit, which
        can print a traceback from its ``__del__``."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is threading.current_thread():
            return
        self._thread.join(wait)
        if not self._thread.is_alive():
            self.loop.close()


class Interruptible:
    """Tracks the thread running one sync attempt so another thread can raise
    ``JobInterrupted`` in it — only while the attempt is still running there, never in the
    next job the thread picks up."""

    __slots__ = ("_lock", "_sent", "_state", "_thread_id")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._state = "pending"  # pending → running → over
        self._sent = False

    def enter(self) -> bool:
        """Called by the job's thread before ``execute``; ``False`` if already interrupted."""
        with self._lock:
            if self._state != "pending":
                return False
            self._thread_id = threading.get_ident()
            self._state = "running"
            return True

    def leave(self) -> None:
        """Called by the job's thread after ``execute``; cancels an interrupt still pending."""
        while True:
            try:
                with self._lock:
                    self._state = "over"
                    if self._sent and self._thread_id is not None:
                        _set_async_exc(self._thread_id, None)
                return
            except JobInterrupted:
                # The interrupt fired here rather than inside execute(); absorb it.
                continue

    def interrupt(self) -> bool:
        """Stop the attempt: before it starts it never runs; while it runs ``JobInterrupted``
        is raised in its thread at the next bytecode (not inside a blocking C call)."""
        with self._lock:
            if self._state == "pending":
                self._state = "over"
                return True
            if self._state != "running" or self._sent or self._thread_id is None:
                return False
            self._sent = True
            _set_async_exc(self._thread_id, JobInterrupted)
            return True


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )
