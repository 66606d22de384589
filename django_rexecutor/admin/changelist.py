"""The job list's plumbing for very large tables: a paginator that estimates the unfiltered
count on PostgreSQL, and a date drill-down that needs no full-table ``DISTINCT`` scan."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from ..decoding import read_datetime


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except an unfiltered job table on PostgreSQL, where ``COUNT(*)`` reads
    every row: above ``estimate_threshold`` rows it takes the planner's estimate from
    ``pg_class.reltuples`` (kept fresh by autovacuum's ANALYZE) instead."""

    estimate_threshold = 100_000

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if isinstance(qs, QuerySet) and not qs.query.where:
            estimate = estimated_rows(qs)
            if estimate is not None and estimate >= self.estimate_threshold:
                return estimate
        return super().count


def estimated_rows(qs: QuerySet[Any]) -> int | None:
    """The planner's row estimate for the queryset's table; ``None`` off PostgreSQL or when
    the table was never analyzed."""
    connection = connections[qs.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [qs.model._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


class JobChangeList(ChangeList):
    """Adds ``date_drilldown``: the context of ``admin/date_hierarchy.html``, built from the
    first and last job of the current selection (found through the primary key, since ids
    grow with ``inserted_at``) instead of Django's ``DISTINCT`` over every row. Periods
    between the two are all offered, even ones without jobs."""

    @cached_property
    def date_drilldown(self) -> dict[str, Any]:
        field = self.date_hierarchy
        if not field:
            return {"show": False}
        year = self.params.get(f"{field}__year")
        month = self.params.get(f"{field}__month")
        day = self.params.get(f"{field}__day")
        generic = f"{field}__"

        def link(filters: dict[str, Any]) -> str:
            return str(self.get_query_string(filters, [generic]))

        ykey, mkey, dkey = f"{field}__year", f"{field}__month", f"{field}__day"
        first, last = self._bounds(field)
        if not (year or month or day) and first and last and first.year == last.year:
            year = str(first.year)
            if first.month == last.month:
                month = str(first.month)
        try:
            y, m, d = (int(v) if v else None for v in (year, month, day))
        except ValueError:
            return {"show": False}
        if y and m and d:
            date = dt.date(y, m, d)
            return {
                "show": True,
                "back": {
                    "link": link({ykey: y, mkey: m}),
                    "title": capfirst(formats.date_format(date, "YEAR_MONTH_FORMAT")),
                },
                "choices": [{"title": capfirst(formats.date_format(date, "MONTH_DAY_FORMAT"))}],
            }
        if y and m:
            days = range(1, calendar.monthrange(y, m)[1] + 1)
            if first and (first.year, first.month) == (y, m):
                days = range(first.day, days.stop)
            if last and (last.year, last.month) == (y, m):
                days = range(days.start, min(days.stop, last.day + 1))
            return {
                "show": True,
                "back": {"link": link({ykey: y}), "title": str(y)},
                "choices": [
                    {
                        "link": link({ykey: y, mkey: m, dkey: n}),
                        "title": capfirst(
                            formats.date_format(dt.date(y, m, n), "MONTH_DAY_FORMAT")
                        ),
                    }
                    for n in days
                ],
            }
        if y:
            months = range(1, 13)
            if first and first.year == y:
                months = range(first.month, 13)
            if last and last.year == y:
                months = range(months.start, last.month + 1)
            return {
                "show": True,
                "back": {"link": link({}), "title": _("All dates")},
                "choices": [
                    {
                        "link": link({ykey: y, mkey: n}),
                        "title": capfirst(
                            formats.date_format(dt.date(y, n, 1), "YEAR_MONTH_FORMAT")
                        ),
                    }
                    for n in months
                ],
            }
        if not (first and last):
            return {"show": True, "back": None, "choices": []}
        return {
            "show": True,
            "back": None,
            "choices": [
                {"link": link({ykey: str(n)}), "title": str(n)}
                for n in range(first.year, last.year + 1)
            ],
        }

    def _bounds(self, field: str) -> tuple[dt.datetime | None, dt.datetime | None]:
        # Read as text: a time Python cannot represent (written by hand) is left out.
        qs = self.queryset.order_by().annotate(rx_bound=Cast(field, TextField()))
        first, last = (
            read_datetime(qs.order_by(order).values_list("rx_bound", flat=True).first())
            for order in ("pk", "-pk")
        )
        first = first if isinstance(first, dt.datetime) else None
        last = last if isinstance(last, dt.datetime) else None
        if first and last and first > last:
            first, last = last, first

        def local(value: dt.datetime | None) -> dt.datetime | None:
            if value is not None and timezone.is_aware(value):
                return timezone.localtime(value)
            return value

        return local(first), local(last)
