"""Indexes of one database vendor, created here rather than in ``Meta.indexes``: PostgreSQL's
GIN and hash indexes (SQLite and MariaDB/MySQL have no such types; queries still work there),
and MariaDB/MySQL's claim index, which stands in for the partial ``rexecutor_job_ready_idx``
(those databases have no partial indexes, so Django creates that one over every job)."""

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


MYSQL_INDEXES = {
    # The claim (MySQLEngine.claim_index_hint): status first, so the claim's locking read walks
    # ready jobs only. ~1.1 kB of key with utf8mb4, within InnoDB's 3072-byte limit.
    "rexecutor_job_ready_mysql_idx": (
        "CREATE INDEX rexecutor_job_ready_mysql_idx ON rexecutor_job "
        "(status, executor, priority, scheduled_at, id)"
    ),
}


def create(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for sql in INDEXES.values():
            schema_editor.execute(sql)
    elif vendor == "mysql":
        for sql in MYSQL_INDEXES.values():
            schema_editor.execute(sql)


def drop(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    elif vendor == "mysql":
        for name in MYSQL_INDEXES:
            schema_editor.execute(f"DROP INDEX {name} ON rexecutor_job")


class Migration(migrations.Migration):
    dependencies = [("django_rexecutor", "0001_initial")]
    # atomic=False: MariaDB/MySQL cannot roll DDL back, so Django refuses it inside a
    # transaction (PostgreSQL still runs the whole migration in one).
    operations = [migrations.RunPython(create, drop, elidable=False, atomic=False)]
