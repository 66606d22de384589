"""Optional integrations, each needing an extra: ``otel`` (OpenTelemetry traces and metrics)
and ``prometheus`` (a metrics view for ``urls.py``). Importing one without its extra raises
``ImproperlyConfigured`` naming the extra to install."""
