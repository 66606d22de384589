"""Job rows the library never writes (as a migration script or a person might), for the tests
of how the claim, queries and the admin survive them."""

from __future__ import annotations

from django.db import connection

from django_rexecutor.models import JobRecord

TABLE = JobRecord._meta.db_table


def corrupt(job_id: int, column: str, sql_value: str) -> None:
    """Write a value the library never writes, as a migration script or a person might."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET {column} = {sql_value} WHERE id = %s", [job_id])


def deep_json(depth: int) -> str:
    return "'" + "[" * depth + "]" * depth + "'"


#: (column, SQL value, words the error must contain); the cases each database can store.
BAD_VALUES = {
    "tags_not_a_list": ("tags", "'\"urgent\"'", "tags", "list of strings"),
    "tags_not_strings": ("tags", "'[1, 2]'", "tags", "list of strings"),
    "scheduled_at_minus_infinity": ("scheduled_at", "'-infinity'", "scheduled_at", "-infinity"),
}
if connection.vendor == "mysql":
    # A DATETIME column of MariaDB/MySQL refuses ±infinity (and any text): no such rows there.
    del BAD_VALUES["scheduled_at_minus_infinity"]
#: MariaDB/MySQL cannot store a timestamp beyond the years 1000–9999.
NO_INFINITE_TIMESTAMPS = "MariaDB/MySQL refuse ±infinity in a DATETIME column"
POSTGRES_BAD_VALUES = {
    "data_nested_10000_deep": ("data", deep_json(10_000), "data", "nested too deeply"),
    "inserted_at_after_9999": ("inserted_at", "'10000-01-01 00:00:00+00'", "inserted_at", "10000"),
}
