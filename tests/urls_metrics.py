"""The test project's URLs plus the Prometheus view (which needs the prometheus extra)."""

from __future__ import annotations

from django.urls import path

from django_rexecutor.contrib.prometheus import metrics_view
from testproject.urls import urlpatterns as project_urls

urlpatterns = [*project_urls, path("rexecutor/metrics", metrics_view)]
