"""List filters for jobs whose choices come from cheap queries, never a scan of the table."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import JobRecord
from ..registry import all_executors

#: At most this many executors are offered (a guard against a table with absurdly many).
MAX_EXECUTORS = 500
#: Tags are offered from this many of the newest jobs: listing every tag in the table would
#: read every row.
TAG_SAMPLE = 1000
MAX_TAGS = 50


def known_executors(alias: str) -> list[str]:
    """Names of the registered executors and of every executor that has jobs.

    The distinct names are read with a recursive "loose index scan" (one index probe per
    name, through the ``(executor, status)`` index) rather than a ``DISTINCT`` over all rows;
    SQLite and PostgreSQL both run it."""
    table = JobRecord._meta.db_table
    sql = f"""
        WITH RECURSIVE names(executor, n) AS (
            SELECT MIN(executor), 1 FROM {table}
            UNION ALL
            SELECT (SELECT MIN(executor) FROM {table} WHERE executor > names.executor), n + 1
              FROM names WHERE names.executor IS NOT NULL AND n < %s
        )
        SELECT executor FROM names WHERE executor IS NOT NULL
    """
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, [MAX_EXECUTORS])
        stored = {row[0] for row in cursor.fetchall()}
    return sorted(stored | set(all_executors()))


def recent_tags(queryset: QuerySet[JobRecord]) -> list[str]:
    """Tags used by the newest jobs, sorted."""
    tags: set[str] = set()
    for value in queryset.order_by("-pk").values_list("tags", flat=True)[:TAG_SAMPLE]:
        tags.update(t for t in value or () if isinstance(t, str))
    return sorted(tags)[:MAX_TAGS]


class ExecutorFilter(admin.SimpleListFilter):
    title = _("executor")
    parameter_name = "executor"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        alias = model_admin.get_queryset(request).db
        return [(name, name) for name in known_executors(alias)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        return queryset.filter(executor=value) if value else queryset


class TagFilter(admin.SimpleListFilter):
    """Filter by one tag, offered from the tags of recent jobs (any tag works in the URL:
    ``?tag=x``). Uses the ``contains_tag`` lookup, served by a GIN index on PostgreSQL."""

    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags = recent_tags(model_admin.get_queryset(request))
        value = self.value()
        if value and value not in tags:
            tags = sorted([*tags, value])
        return [(tag, tag) for tag in tags]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        return queryset.filter(tags__contains_tag=value) if value else queryset
