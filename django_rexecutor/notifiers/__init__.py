"""Notifiers: how workers hear that a job became ready or a running job should be cancelled.

A backend hands out its notifier with ``Backend.notifier()``: ``PostgresNotifier`` listens to the
database's NOTIFY (``postgresql.py``); ``LocalNotifier`` wakes waiters of this process only
(``local.py``). Notifications only make things faster: every waiter also has a timeout, so a
missed one delays a job by at most a poll interval."""

from .base import CANCEL_CHANNEL, JOBS_CHANNEL, Callback, Notifier
from .local import LocalNotifier

__all__ = ["CANCEL_CHANNEL", "JOBS_CHANNEL", "Callback", "LocalNotifier", "Notifier"]
