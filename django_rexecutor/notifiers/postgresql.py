"""PostgreSQL LISTEN on a dedicated connection: wake-ups for idle workers.

The job table's pgtrigger triggers ``NOTIFY`` on ``JOBS_CHANNEL`` (payload: executor name) when
rows become ready and on ``CANCEL_CHANNEL`` (payload: job id) when a running job gets a cancel
request. One ``PostgresNotifier`` per database alias and process keeps a psycopg 3
connection in autocommit mode listening on both, in a daemon thread, and reconnects with
backoff when the connection drops. Notifications only speed things up: callers always wait
with a timeout and poll, so a lost notification delays a job by at most one poll interval."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg

from .base import CANCEL_CHANNEL, JOBS_CHANNEL, AnnouncingNotifier

logger = logging.getLogger("django_rexecutor.notify")

#: ``OPTIONS`` keys Django understands itself and psycopg.connect() would reject.
_DJANGO_ONLY_OPTIONS = frozenset(
    {"isolation_level", "server_side_binding", "pool", "assume_role", "cursor_factory", "context"}
)
_HEALTH_CHECK_EVERY = 10.0


def connection_kwargs(settings_dict: dict[str, Any]) -> dict[str, Any]:
    """psycopg.connect() arguments for a Django ``DATABASES`` entry."""
    kwargs: dict[str, Any] = {
        k: v
        for k, v in (settings_dict.get("OPTIONS") or {}).items()
        if k not in _DJANGO_ONLY_OPTIONS
    }
    for key, name in (("NAME", "dbname"), ("USER", "user"), ("PASSWORD", "password")):
        if settings_dict.get(key):
            kwargs[name] = settings_dict[key]
    if settings_dict.get("HOST"):
        kwargs["host"] = settings_dict["HOST"]
    if settings_dict.get("PORT"):
        kwargs["port"] = str(settings_dict["PORT"])
    kwargs.setdefault("application_name", "django-rexecutor listener")
    return kwargs


class PostgresNotifier(AnnouncingNotifier):
    """Listens on the job channels of one database and wakes waiters and subscribers."""

    cross_process = True

    def __init__(self, settings_dict: dict[str, Any], alias: str = "default") -> None:
        super().__init__()
        self.alias = alias
        self._kwargs = connection_kwargs(settings_dict)
        self._listening = False
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, wait: float = 0.0) -> bool:
        """Start listening (once); wait up to ``wait`` seconds for the LISTEN to be in place.
        Returns whether it is."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"rexecutor-listen-{self.alias}", daemon=True
                )
                self._thread.start()
            if wait > 0:
                self._cond.wait_for(lambda: self._listening or self._stopped, wait)
            return self._listening

    def stop(self, wait: float = 0.0) -> None:
        """Stop listening; wait up to ``wait`` seconds for the connection to be closed."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if wait > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    @property
    def listening(self) -> bool:
        return self._listening

    # -- the listener thread -----------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.1
        reconnecting = False
        while not self._stopped:
            try:
                with psycopg.connect(autocommit=True, **self._kwargs) as conn:
                    conn.execute(f'LISTEN "{JOBS_CHANNEL}"')
                    conn.execute(f'LISTEN "{CANCEL_CHANNEL}"')
                    with self._cond:
                        self._listening = True
                        if reconnecting:
                            # Notifications may have been missed while disconnected.
                            self._missed()
                        self._cond.notify_all()
                    reconnecting = True
                    if delay > 0.1:
                        logger.warning("Listening for job notifications again on %r", self.alias)
                    self.notify("", "")
                    delay = 0.1
                    self._listen(conn)
            except psycopg.Error as exc:
                if not self._stopped:
                    logger.warning(
                        "Notification connection to %r lost (%s); reconnecting in %.1fs",
                        self.alias, str(exc).strip() or type(exc).__name__, delay,
                    )  # fmt: skip
            finally:
                with self._cond:
                    self._listening = False
            if self._stopped:
                return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        checked = time.monotonic()
        while not self._stopped:
            for notify in conn.notifies(timeout=1.0):
                self.notify(notify.channel, notify.payload)
            if time.monotonic() - checked > _HEALTH_CHECK_EVERY:
                # A half-open TCP connection would otherwise stay silent forever.
                conn.execute("SELECT 1")
                checked = time.monotonic()


_notifiers: dict[tuple[int, str], PostgresNotifier] = {}
_lock = threading.Lock()


def get_notifier(alias: str) -> PostgresNotifier:
    """The process-wide notifier of database ``alias`` (a new one after ``fork``)."""
    from django.db import connections

    key = (os.getpid(), alias)
    with _lock:
        notifier = _notifiers.get(key)
        if notifier is None or notifier.stopped:
            notifier = _notifiers[key] = PostgresNotifier(connections[alias].settings_dict, alias)
        return notifier


def stop_notifiers(wait: float = 5.0) -> None:
    """Stop this process's notifiers and close their connections (e.g. before a test run drops
    its database, which PostgreSQL refuses while a LISTEN connection is open)."""
    with _lock:
        mine = [key for key in _notifiers if key[0] == os.getpid()]
        notifiers = [_notifiers.pop(key) for key in mine]
    for notifier in notifiers:
        notifier.stop(wait=wait)
