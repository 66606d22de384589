"""The job admin: a fast, read-only list and detail; jobs change only through the rerun and
cancel actions, which need their own permissions."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from ..conf import rexecutor_settings
from ..decoding import Unreadable, read_datetime, read_json, read_tags
from ..models import JSON_FIELDS, TIMESTAMP_FIELDS, JobErrorRecord, JobRecord
from ..transitions import CANCELLABLE, RERUNNABLE
from . import dashboard, workflows
from .access import admin_backend
from .actions import (
    cancel_reason,
    cancel_selected,
    log_history,
    report,
    rerun_selected,
)
from .badges import badge, badge_css
from .changelist import EstimatedCountPaginator, JobChangeList
from .filters import ExecutorFilter, TagFilter, known_executors

#: Who may pause and resume executors from the dashboard (``PausedExecutorRecord.Meta``).
PAUSE_PERMISSION = "pause_executor"

#: Search terms that are ids must fit a 64-bit primary key.
MAX_ID = 2**63 - 1


def pretty_json(value: Any) -> SafeString:
    """JSON indented in a ``<pre>``; escaped, so a payload holding markup shows as text."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre class="rx-json">{}</pre>', text)


class JobErrorInline(admin.TabularInline):
    """The error history, oldest first, read-only."""

    model = JobErrorRecord
    fields = ["attempt", "error_type", "message_text", "traceback_text", "recorded_at"]
    readonly_fields = ["attempt", "error_type", "message_text", "traceback_text", "recorded_at"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    verbose_name = _("error")
    verbose_name_plural = _("error history")

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobErrorRecord]:
        return super().get_queryset(request).order_by("recorded_at", "id")

    # Seeing a job means seeing its errors: they are part of the job, not a model of their own.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.parent_model_admin_view(request)

    def parent_model_admin_view(self, request: HttpRequest) -> bool:
        opts = JobRecord._meta
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or (
            request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("message"))
    def message_text(self, error: JobErrorRecord) -> SafeString:
        return format_html('<div class="rx-message">{}</div>', error.message)

    @admin.display(description=_("traceback"))
    def traceback_text(self, error: JobErrorRecord) -> SafeString | str:
        if not error.traceback:
            return "—"
        return format_html('<pre class="rx-traceback">{}</pre>', error.traceback)


#: The detail page's sections (all read-only).
_SUMMARY = ("id", "executor", "status_badge", "attempts", "priority", "tag_list")
_PAYLOAD = ("data_json", "metadata_json", "result_json")
_TIMES = (*(f"{name}_shown" for name in TIMESTAMP_FIELDS), "cancel_reason")
#: Columns a row written by hand may hold unreadable values in: loaded as text and decoded
#: one by one (``decoding``), so such a row shows its problem instead of failing the page.
_STORED = (*TIMESTAMP_FIELDS, *JSON_FIELDS, "progress_at")
_INTERNALS = ("claimed_by", "unique_key", "partition_key")
#: The last progress the job's attempt reported (``Job.report_progress``).
_PROGRESS = ("progress_bar", "progress_note", "progress_at_shown")
#: A workflow step's workflow (linking to its page) and step name.
_WORKFLOW = ("workflow_link", "run_if", "pending")


def stored(job: JobRecord, name: str) -> Any:
    """The value of column ``name`` as decoded from its text (``_STORED``): the value, or an
    ``Unreadable`` naming the stored value and the problem."""
    raw = getattr(job, f"rx_{name}")
    if name.endswith("_at"):
        return read_datetime(raw)
    return read_tags(raw) if name == "tags" else read_json(raw)


def show_unreadable(value: Unreadable) -> SafeString:
    return format_html('<span class="rx-unreadable">{}</span>', str(value))


def _time_column(name: str) -> Any:
    """A read-only column showing the timestamp ``name``, readable or not."""

    label = getattr(JobRecord._meta.get_field(name), "verbose_name", name)

    @admin.display(description=label, ordering=name)
    def show(self: Any, job: JobRecord) -> Any:
        value = stored(job, name)
        return show_unreadable(value) if isinstance(value, Unreadable) else value

    return show


@admin.register(JobRecord)
class JobRecordAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "executor",
        "status_badge",
        "progress_bar",
        "attempts",
        "priority",
        "tag_list",
        "scheduled_at_shown",
        "finished",
        "last_error",
    ]
    list_display_links = ["id", "executor"]
    list_filter = ["status", ExecutorFilter, TagFilter]
    search_fields = ["executor"]  # shows the box; get_search_results does the searching
    search_help_text = _("A job id, an executor name (or part of it), or a tag.")
    ordering = ["-id"]
    date_hierarchy = "inserted_at"
    list_per_page = 50
    list_max_show_all = 500
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = [rerun_selected, cancel_selected]
    inlines = [JobErrorInline]
    fieldsets = [
        (None, {"fields": _SUMMARY}),
        (_("Payload"), {"fields": _PAYLOAD}),
        (_("Times"), {"fields": _TIMES}),
        (_("Internals"), {"fields": _INTERNALS, "classes": ["collapse"]}),
        (_("Progress"), {"fields": _PROGRESS}),
        (_("Workflow"), {"fields": _WORKFLOW}),
    ]
    # Every field shown is read-only: jobs change only through the actions.
    readonly_fields = [*_SUMMARY, *_PAYLOAD, *_TIMES, *_INTERNALS, *_PROGRESS, *_WORKFLOW]

    # -- queries -------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[JobRecord]:
        last_error = JobErrorRecord.objects.filter(job=OuterRef("pk")).order_by("-id")
        return (
            super()
            .get_queryset(request)
            .using(rexecutor_settings.DATABASE)
            .defer(*_STORED)
            .annotate(
                last_error_type=Subquery(last_error.values("error_type")[:1]),
                finished_at_value=Coalesce(F("completed_at"), F("cancelled_at"), F("discarded_at")),
                **{f"rx_{name}": Cast(name, TextField()) for name in _STORED},
                rx_finished_at=Cast(
                    Coalesce(F("completed_at"), F("cancelled_at"), F("discarded_at")), TextField()
                ),
            )
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[JobRecord], search_term: str
    ) -> tuple[QuerySet[JobRecord], bool]:
        """Each word must match the id, a tag exactly, or part of an executor name. Executor
        names are matched against the (short) list of names, so the query uses the executor
        index instead of a ``LIKE '%…%'`` scan."""
        terms = search_term.split()
        if not terms:
            return queryset, False
        names = known_executors(queryset.db)
        for term in terms:
            match = Q(tags__contains_tag=term)
            executors = [n for n in names if term.casefold() in n.casefold()]
            if executors:
                match |= Q(executor__in=executors)
            digits = term.removeprefix("#")
            # ASCII only: str.isdigit() accepts "²" and "①", which int() refuses.
            if digits.isascii() and digits.isdigit() and int(digits) <= MAX_ID:
                match |= Q(pk=int(digits))
            queryset = queryset.filter(match)
        return queryset, False

    # -- read-only: jobs change only through actions ---------------------------------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _has_custom_permission(self, request: HttpRequest, codename: str, obj: Any) -> bool:
        opts = self.opts
        return self.has_view_permission(request, obj) and request.user.has_perm(
            f"{opts.app_label}.{codename}"
        )

    def has_rerun_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_custom_permission(request, "rerun_job", obj)

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has_custom_permission(request, "cancel_job", obj)

    # -- columns -----------------------------------------------------------------------------
    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, job: JobRecord) -> SafeString:
        return badge(job.status)

    @admin.display(description=_("attempt"))
    def attempts(self, job: JobRecord) -> str:
        return f"{job.attempt}/{job.max_attempts}"

    @admin.display(description=_("tags"))
    def tag_list(self, job: JobRecord) -> SafeString | str:
        tags = stored(job, "tags")
        if isinstance(tags, Unreadable):
            return show_unreadable(tags)
        if not tags:
            return "—"
        return format_html_join(" ", '<code class="rx-tag">{}</code>', ((t,) for t in tags))

    @admin.display(description=_("finished"), ordering="finished_at_value")
    def finished(self, job: JobRecord) -> Any:
        value = stored(job, "finished_at")
        return show_unreadable(value) if isinstance(value, Unreadable) else value

    inserted_at_shown = _time_column("inserted_at")
    scheduled_at_shown = _time_column("scheduled_at")
    attempted_at_shown = _time_column("attempted_at")
    completed_at_shown = _time_column("completed_at")
    cancelled_at_shown = _time_column("cancelled_at")
    discarded_at_shown = _time_column("discarded_at")
    cancel_requested_at_shown = _time_column("cancel_requested_at")
    progress_at_shown = _time_column("progress_at")

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, job: JobRecord) -> SafeString | str:
        """A small bar with the percentage, and the note as its tooltip; "—" until the job
        reports progress."""
        if job.progress is None:
            return "—"
        percent = max(0.0, min(100.0, job.progress * 100))
        return format_html(
            '<span class="rx-progress" title="{}"><span class="rx-progress-bar">'
            '<span class="rx-progress-fill" style="width: {}%"></span></span> {}%</span>',
            job.progress_note or f"{percent:.0f}%",
            f"{percent:.1f}",
            f"{percent:.0f}",
        )

    @admin.display(description=_("last error"))
    def last_error(self, job: JobRecord) -> str:
        return getattr(job, "last_error_type", None) or "—"

    @admin.display(description=_("data"))
    def data_json(self, job: JobRecord) -> SafeString:
        return self._payload(job, "data")

    @admin.display(description=_("metadata"))
    def metadata_json(self, job: JobRecord) -> SafeString:
        return self._payload(job, "metadata")

    @admin.display(description=_("result"))
    def result_json(self, job: JobRecord) -> SafeString:
        return self._payload(job, "result")

    @admin.display(description=_("workflow"))
    def workflow_link(self, job: JobRecord) -> SafeString | str:
        if job.workflow_id is None:
            return "—"
        url = reverse(
            f"admin:{self.opts.app_label}_workflow",
            args=[job.workflow_id],
            current_app=self.admin_site.name,
        )
        return format_html(
            '<a href="{}" id="rx-workflow-link">{}</a> · {} <code>{}</code>',
            url,
            job.workflow_id,
            _("step"),
            job.step,
        )

    @staticmethod
    def _payload(job: JobRecord, name: str) -> SafeString:
        value = stored(job, name)
        return show_unreadable(value) if isinstance(value, Unreadable) else pretty_json(value)

    # -- pages -----------------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        own = [
            path(
                "dashboard/",
                wrap(self.dashboard_view),
                name=f"{self.opts.app_label}_dashboard",
            ),
            path(
                "dashboard/pause/",
                wrap(self.pause_view),
                name=f"{self.opts.app_label}_pause",
            ),
            path(
                "workflow/<str:workflow_id>/",
                wrap(self.workflow_view),
                name=f"{self.opts.app_label}_workflow",
            ),
            path(
                "workflow/<str:workflow_id>/<str:action>/",
                wrap(self.workflow_action_view),
                name=f"{self.opts.app_label}_workflow_action",
            ),
            path("<path:object_id>/rerun/", wrap(self.rerun_view), name=f"{prefix}_rerun"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name=f"{prefix}_cancel"),
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"rx_badge_css": badge_css(), **(extra_context or {})}
        return super().changelist_view(request, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        context: dict[str, Any] = {"rx_badge_css": badge_css(), **(extra_context or {})}
        if job is not None:
            context["rx_can_rerun"] = job.status in RERUNNABLE and self.has_rerun_permission(
                request, job
            )
            context["rx_can_cancel"] = job.status in CANCELLABLE and self.has_cancel_permission(
                request, job
            )
            context["rx_cancel_pending"] = job.rx_cancel_requested_at is not None
        return super().change_view(request, object_id, form_url, context)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Jobs dashboard"),
            "rx_badge_css": badge_css(),
            "rx_can_pause": self.has_pause_permission(request),
            **dashboard.collect(self.get_queryset(request).db),
        }
        partial = request.GET.get("partial") == "1"
        template = (
            "admin/django_rexecutor/dashboard_panels.html"
            if partial
            else "admin/django_rexecutor/dashboard.html"
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

    def _act(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        queryset = self.get_queryset(request)
        job = get_object_or_404(queryset, pk=object_id)
        allowed = (
            self.has_rerun_permission(request, job)
            if action == "rerun"
            else self.has_cancel_permission(request, job)
        )
        if not allowed:
            raise PermissionDenied
        backend = admin_backend(queryset.db)
        if action == "rerun":
            result = backend.rerun_jobs([job.pk])
        else:
            result = backend.cancel_jobs([job.pk], cancel_reason(request))
        log_history(request, queryset.db, result, action)
        report(request, result, action)
        return HttpResponseRedirect(
            reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[job.pk],
                current_app=self.admin_site.name,
            )
        )

    def rerun_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._act)(request, object_id, "rerun")

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._act)(request, object_id, "cancel")

    # -- workflows -------------------------------------------------------------------------
    def workflow_view(self, request: HttpRequest, workflow_id: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        alias = self.get_queryset(request).db
        page = workflows.load(alias, workflow_id)
        if page is None:
            raise Http404(f"No workflow {workflow_id!r}.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Workflow %(id)s") % {"id": workflow_id},
            "rx_badge_css": badge_css(),
            "rx_can_cancel": page.unfinished and self.has_cancel_permission(request),
            "rx_can_rerun": page.failed_ids and self.has_rerun_permission(request),
            **workflows.context_of(page),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_rexecutor/workflow.html", context)

    def workflow_action_view(
        self, request: HttpRequest, workflow_id: str, action: str
    ) -> HttpResponse:
        """``cancel``: every unfinished step (``cancel_job`` permission); ``rerun``: the
        failed steps (``rerun_job`` permission). POST only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        alias = self.get_queryset(request).db
        page = workflows.load(alias, workflow_id)
        if page is None:
            raise Http404(f"No workflow {workflow_id!r}.")
        backend = admin_backend(alias)
        if action == "cancel":
            if not self.has_cancel_permission(request):
                raise PermissionDenied
            result = backend.cancel_workflow(workflow_id, cancel_reason(request))
        elif action == "rerun":
            if not self.has_rerun_permission(request):
                raise PermissionDenied
            result = backend.rerun_jobs(page.failed_ids)
        else:
            raise Http404(f"No workflow action {action!r}.")
        log_history(request, alias, result, action)
        report(request, result, action)
        return HttpResponseRedirect(
            reverse(
                f"admin:{self.opts.app_label}_workflow",
                args=[workflow_id],
                current_app=self.admin_site.name,
            )
        )

    # -- pausing executors (dashboard) -------------------------------------------------------
    def has_pause_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"{self.opts.app_label}.{PAUSE_PERMISSION}"))

    def pause_view(self, request: HttpRequest) -> HttpResponse:
        return require_POST(self._pause)(request)

    def _pause(self, request: HttpRequest) -> HttpResponse:
        if not self.has_pause_permission(request):
            raise PermissionDenied
        name = request.POST.get("executor", "")
        action = request.POST.get("action")
        if not name or action not in ("pause", "resume"):
            return HttpResponseBadRequest("Give an executor and action=pause or action=resume.")
        backend = admin_backend(self.get_queryset(request).db)
        if action == "pause":
            backend.pause_executors([name])
            messages.success(
                request, _("Paused %(name)s: no worker claims its jobs.") % {"name": name}
            )
        else:
            backend.resume_executors([name])
            messages.success(request, _("Resumed %(name)s.") % {"name": name})
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_dashboard", current_app=self.admin_site.name)
        )
