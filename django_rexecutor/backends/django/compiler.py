"""Compile a query tree to a Django ``Q`` object.

A pure function: no database access, so it can be tested by comparing ``Q`` objects. Nesting is
kept by ``Q``'s own tree, so ``Not``/``And``/``Or`` precedence is exactly the tree's (rexecutor's
SQL builder lost parentheses). An empty ``And`` matches every job, an empty ``Or`` none."""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

from django.db.models import Q

from ...query import (
    And,
    DataEquals,
    ExecutorEqual,
    IdEquals,
    IdIn,
    MetadataEquals,
    Not,
    Or,
    Query,
    ScheduledAtAfter,
    ScheduledAtBefore,
    ScheduledAtEqual,
    StatusEqual,
    TagsAllOf,
    TagsOneOf,
    WorkflowEqual,
)

MATCH_ALL = Q(pk__isnull=False)
MATCH_NONE = Q(pk__in=[])


def _all(parts: list[Q]) -> Q:
    return reduce(and_, parts) if parts else MATCH_ALL


def _any(parts: list[Q]) -> Q:
    return reduce(or_, parts) if parts else MATCH_NONE


def _json_equals(field: str, value: object) -> Q:
    # Python None is stored as SQL NULL (the columns are nullable), not as JSON null.
    return Q(**{f"{field}__isnull": True}) if value is None else Q(**{field: value})


def compile_query(query: Query) -> Q:
    """Return the ``Q`` object selecting the ``JobRecord`` rows that ``query`` matches."""
    match query:
        case Not(query=inner):
            return ~compile_query(inner)
        case And(queries=parts):
            return _all([compile_query(p) for p in parts])
        case Or(queries=parts):
            return _any([compile_query(p) for p in parts])
        case ExecutorEqual(executor=name):
            return Q(executor=name)
        case DataEquals(data=value):
            return _json_equals("data", value)
        case MetadataEquals(metadata=value):
            return _json_equals("metadata", value)
        case IdEquals(id=job_id):
            return Q(pk=job_id)
        case IdIn(ids=ids):
            return Q(pk__in=list(ids)) if ids else MATCH_NONE
        case StatusEqual(status=status):
            return Q(status=status.value)
        case TagsAllOf(tags=tags):
            return _all([Q(tags__contains_tag=t) for t in tags])
        case TagsOneOf(tags=tags):
            return _any([Q(tags__contains_tag=t) for t in tags])
        case ScheduledAtBefore(at=at):
            return Q(scheduled_at__lt=at)
        case ScheduledAtAfter(at=at):
            return Q(scheduled_at__gt=at)
        case ScheduledAtEqual(at=at):
            return Q(scheduled_at=at)
        case WorkflowEqual(workflow_id=workflow_id):
            return Q(workflow_id=workflow_id)
    raise TypeError(f"Cannot compile {query!r}: not a query node.")
