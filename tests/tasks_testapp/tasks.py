"""Imported by Django's start-up like any installed app's ``tasks.py``: its tasks are
registered, so workers run them without ``allowed_modules``."""

from __future__ import annotations

from django.tasks import task


@task
def greet(name: str) -> str:
    return f"hello {name}"
