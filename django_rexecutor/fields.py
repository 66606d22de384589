"""Model fields with lookups of their own."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import Lookup
from django.db.models.sql.compiler import SQLCompiler


class TagsField(models.JSONField):
    """A JSON list of strings with a ``contains_tag`` lookup that works on every database."""


@TagsField.register_lookup
class ContainsTag(Lookup):
    """``tags__contains_tag="x"``: the list holds the string ``x``."""

    lookup_name = "contains_tag"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        return ("%s", [value])

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        sql = f"EXISTS (SELECT 1 FROM json_each({lhs}) AS t WHERE t.value = %s)"
        return sql, [*lhs_params, self.rhs]

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Any:
        # jsonb containment, served by the GIN index on tags. That index is partial (WHERE
        # tags <> '[]'), and the planner only uses it when the query repeats that condition;
        # it changes nothing else, since a list holding a tag is never empty.
        lhs, lhs_params = self.process_lhs(compiler, connection)
        sql = f"({lhs} @> %s::jsonb AND {lhs} <> '[]'::jsonb)"
        return sql, [*lhs_params, json.dumps([self.rhs]), *lhs_params]

    def as_mysql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Any:
        # MariaDB and MySQL: JSON_CONTAINS on the array. MariaDB has no index on JSON values,
        # so this reads the rows the rest of the query selects (see docs/databases.md).
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"JSON_CONTAINS({lhs}, %s)", [*lhs_params, json.dumps(self.rhs)]
