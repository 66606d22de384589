"""Rerun and cancel from the admin: the bulk actions and the messages reporting what was done
and what was skipped. Both go through the backend's bulk operations, so the admin applies the
same transition rules as the Python API."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..backends.values import BulkResult
from ..models import JobRecord
from ..transitions import SkipReason
from .access import admin_backend

#: Admin wording of the backend's skip reasons.
SKIP_REASONS = {
    SkipReason.RUNNING: gettext_lazy("already running"),
    SkipReason.WAITING: gettext_lazy("already waiting to run"),
    SkipReason.FINISHED: gettext_lazy("already finished"),
    SkipReason.NOT_FOUND: gettext_lazy("no longer exists"),
}


def cancel_reason(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    name = user.get_username() if user is not None and user.is_authenticated else "?"
    return f"cancelled from the admin by {name}"


def _skipped_text(result: BulkResult) -> str:
    counts = Counter(result.skipped.values())
    parts = [
        f"{n} {SKIP_REASONS.get(reason, reason)}"
        for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return ", ".join(parts)


def report(request: HttpRequest, result: BulkResult, action: str) -> None:
    """Tell the user what happened, e.g. "2 jobs rerun, 1 skipped (1 already running)."."""
    done = len(result.done)
    if action == "rerun":
        text = ngettext("%(n)d job rerun", "%(n)d jobs rerun", done) % {"n": done}
    else:
        text = ngettext("%(n)d job cancelled", "%(n)d jobs cancelled", done) % {"n": done}
        if result.requested:
            text += " " + _("(%(n)d running: cancellation requested)") % {
                "n": len(result.requested)
            }
    skipped = len(result.skipped)
    if skipped:
        text += ", " + _("%(n)d skipped (%(why)s)") % {"n": skipped, "why": _skipped_text(result)}
    level = messages.WARNING if skipped else messages.SUCCESS
    messages.add_message(request, level, text + ".")


#: Job ids per query when writing the admin's history.
LOG_BATCH = 1000


def log_history(request: HttpRequest, alias: str, result: BulkResult, action: str) -> None:
    """Record what was done in the admin's history of each job (its "History" page): who,
    when, what. Built from ids and executor names, without loading the jobs."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    user_id = getattr(getattr(request, "user", None), "pk", None)
    if user_id is None or not result.done:
        return
    requested = set(result.requested)
    texts = {
        "rerun": "Rerun from the admin.",
        "cancel": "Cancelled from the admin.",
        "requested": "Cancellation requested from the admin.",
    }
    content_type = ContentType.objects.get_for_model(JobRecord)
    done = list(result.done)
    for start in range(0, len(done), LOG_BATCH):
        rows = (
            JobRecord.objects.using(alias)
            .filter(pk__in=done[start : start + LOG_BATCH])
            .values_list("pk", "executor")
        )
        LogEntry.objects.bulk_create(
            LogEntry(
                user_id=user_id,
                content_type_id=content_type.pk,
                object_id=str(pk),
                object_repr=f"{executor} #{pk}"[:200],
                action_flag=CHANGE,
                change_message=texts["requested" if pk in requested else action],
            )
            for pk, executor in rows
        )


def _ids(queryset: QuerySet[Any]) -> list[int]:
    return list(queryset.order_by("pk").values_list("pk", flat=True))


@admin.action(permissions=["rerun"], description=gettext_lazy("Rerun selected jobs"))
def rerun_selected(
    modeladmin: admin.ModelAdmin[JobRecord], request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    result = admin_backend(queryset.db).rerun_jobs(_ids(queryset))
    log_history(request, queryset.db, result, "rerun")
    report(request, result, "rerun")


@admin.action(permissions=["cancel"], description=gettext_lazy("Cancel selected jobs"))
def cancel_selected(
    modeladmin: admin.ModelAdmin[JobRecord], request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    result = admin_backend(queryset.db).cancel_jobs(_ids(queryset), cancel_reason(request))
    log_history(request, queryset.db, result, "cancel")
    report(request, result, "cancel")
