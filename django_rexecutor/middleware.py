"""Middleware around every attempt (``REXECUTOR["MIDDLEWARE"]``), and the enqueue seam.

Shaped like Django's middleware. Each entry is the dotted path of a factory (usually a
class) called once with the next callable of the chain, returning a callable that takes the
``Job`` and returns what ``execute`` returned (``None``, ``Done``, ``Cancel``, ``Snooze``) or
raises what it raised::

    class Timing:
        def __init__(self, get_outcome):
            self.get_outcome = get_outcome

        def __call__(self, job):
            started = time.monotonic()
            try:
                return self.get_outcome(job)
            finally:
                record(job.executor, time.monotonic() - started)

A factory says which jobs it serves with two attributes, as Django's do: ``sync_capable``
(default ``True``) and ``async_capable`` (default ``False``). Sync jobs get a chain of the
sync-capable entries, ``async def execute`` jobs a chain of the async-capable ones, whose
next callable is a coroutine function and whose callable must return an awaitable. A factory
capable of both checks ``asgiref.sync.iscoroutinefunction(get_outcome)``. An entry that
cannot serve a kind of job is left out of that kind's chain.

Whatever a middleware raises, before or after calling the next one, is the attempt's error
(``panic``, retried by the executor's rules): the job is recorded, the worker lives on.

A factory may also define ``around_enqueue(jobs, insert)`` (a static or class method): it is
called with the list of ``EnqueuableJob`` values about to be inserted and ``insert``, which
inserts a list and returns its ids; it returns those ids, and may pass changed jobs on (e.g.
with trace context in their metadata). ``Executor.enqueue``, builders and ``enqueue_many``
all enqueue through it (``enqueue_through``)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import rexecutor_settings

if TYPE_CHECKING:
    from .backends.values import EnqueuableJob
    from .executor import Executor
    from .job import Job, JobId

#: The next callable of a sync chain, and what a sync-capable factory returns.
Handler = Callable[["Job"], Any]
#: The next callable of an async chain (a coroutine function).
AsyncHandler = Callable[["Job"], Awaitable[Any]]
Insert = Callable[[list["EnqueuableJob"]], list["JobId"]]
EnqueueHook = Callable[..., list["JobId"]]

#: The executor instance of the attempt being run, read by the innermost callable.
_executor: ContextVar[Executor] = ContextVar("rexecutor_executor")


def _execute(job: Job) -> Any:
    return _executor.get().execute(job)


async def _aexecute(job: Job) -> Any:
    return await _executor.get().execute(job)  # type: ignore[misc]


@dataclass(frozen=True)
class Chain:
    """The built middleware of one ``MIDDLEWARE`` setting."""

    sync: Handler
    async_: AsyncHandler
    enqueue_hooks: tuple[EnqueueHook, ...]


_chains: dict[tuple[str, ...], Chain] = {}


def load_factory(path: str) -> Any:
    """The factory at ``path``; ``ImproperlyConfigured`` naming it if it cannot be imported
    (or, for the optional integrations, if their extra is missing)."""
    try:
        factory = import_string(path)
    except ImproperlyConfigured:
        raise
    except ImportError as exc:
        raise ImproperlyConfigured(
            f'REXECUTOR["MIDDLEWARE"] entry {path!r} cannot be imported: {exc}'
        ) from exc
    if not callable(factory):
        raise ImproperlyConfigured(
            f'REXECUTOR["MIDDLEWARE"] entry {path!r} is not callable (a class or function '
            "taking the next callable)."
        )
    return factory


def build(paths: Sequence[str]) -> Chain:
    """Build the chains of ``paths`` (the first entry is the outermost)."""
    factories = [load_factory(p) for p in paths]
    sync: Handler = _execute
    async_: AsyncHandler = _aexecute
    for factory in reversed(factories):
        if getattr(factory, "sync_capable", True):
            sync = factory(sync)
        if getattr(factory, "async_capable", False):
            handler = factory(async_)
            if not iscoroutinefunction(handler):
                # e.g. a class whose __call__ returns a coroutine: mark it as Django does.
                handler = markcoroutinefunction(_as_coroutine_function(handler))
            async_ = handler
    hooks = tuple(hook for hook in (getattr(f, "around_enqueue", None) for f in factories) if hook)
    return Chain(sync, async_, hooks)


def _as_coroutine_function(handler: Callable[[Job], Any]) -> AsyncHandler:
    async def call(job: Job) -> Any:
        value = handler(job)
        return await value if inspect.isawaitable(value) else value

    return call


def chain() -> Chain:
    """The chain of the current ``MIDDLEWARE`` setting, built once per distinct setting."""
    paths = tuple(rexecutor_settings.MIDDLEWARE)
    built = _chains.get(paths)
    if built is None:
        built = _chains[paths] = build(paths)
    return built


def call_execute(executor: Executor, job: Job) -> Any:
    """Run a sync attempt through the middleware: what ``execute`` returned, or its error."""
    token = _executor.set(executor)
    try:
        return chain().sync(job)
    finally:
        _executor.reset(token)


async def acall_execute(executor: Executor, job: Job) -> Any:
    """Run an async attempt through the async-capable middleware."""
    token = _executor.set(executor)
    try:
        return await chain().async_(job)
    finally:
        _executor.reset(token)


def enqueue_through(jobs: list[EnqueuableJob], insert: Insert) -> list[JobId]:
    """Insert ``jobs`` with ``insert``, through every middleware's ``around_enqueue``."""
    paths = rexecutor_settings.MIDDLEWARE
    if not paths:  # the usual case: no lookup, no wrapping
        return insert(jobs)
    call: Callable[[list[EnqueuableJob]], list[JobId]] = insert
    for hook in reversed(chain().enqueue_hooks):
        call = partial(hook, insert=call)
    return call(jobs)
