"""PostgreSQL-only indexes, created here rather than in ``Meta.indexes`` because SQLite has no
GIN or hash index types (the SQLite tables get none of them; queries still work there)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = {
    # tags__contains_tag compiles to `tags @> '["x"]'`, which jsonb_path_ops serves; untagged
    # jobs (the common case) stay out of the index, so plain enqueues pay nothing for it.
    "rexecutor_job_tags_gin": (
        "CREATE INDEX IF NOT EXISTS rexecutor_job_tags_gin ON rexecutor_job "
        "USING gin (tags jsonb_path_ops) WHERE tags <> '[]'::jsonb"
    ),
    # Where.data_equals is an exact jsonb comparison; a hash index serves it whatever the
    # payload's size (a b-tree would reject rows over ~2.7 kB).
    "rexecutor_job_data_hash": (
        "CREATE INDEX IF NOT EXISTS rexecutor_job_data_hash ON rexecutor_job "
        "USING hash (data) WHERE data IS NOT NULL"
    ),
}


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in INDEXES.values():
            schema_editor.execute(sql)


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("django_rexecutor", "0001_initial")]
    operations = [migrations.RunPython(create, drop, elidable=False)]
