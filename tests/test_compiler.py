"""The query tree → ``Q`` compiler: exact ``Q`` objects for every node kind, and the same
trees run on the database (SQLite and PostgreSQL) returning exactly the expected rows."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Q

from django_rexecutor import DjangoBackend, JobStatus, Where
from django_rexecutor.backends.django.compiler import MATCH_ALL, MATCH_NONE, compile_query
from django_rexecutor.backends.django.rows import to_job
from django_rexecutor.models import JobRecord
from django_rexecutor.query import (
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
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


# -- pure compilation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (ExecutorEqual("mail"), Q(executor="mail")),
        (DataEquals({"a": 1}), Q(data={"a": 1})),
        (DataEquals(None), Q(data__isnull=True)),
        (MetadataEquals([1, "x"]), Q(metadata=[1, "x"])),
        (MetadataEquals(None), Q(metadata__isnull=True)),
        (IdEquals(7), Q(pk=7)),
        (IdIn((1, 2, 3)), Q(pk__in=[1, 2, 3])),
        (IdIn(()), MATCH_NONE),
        (StatusEqual(JobStatus.RETRYABLE), Q(status="retryable")),
        (TagsAllOf(("a", "b")), Q(tags__contains_tag="a") & Q(tags__contains_tag="b")),
        (TagsAllOf(()), MATCH_ALL),
        (TagsOneOf(("a", "b")), Q(tags__contains_tag="a") | Q(tags__contains_tag="b")),
        (TagsOneOf(()), MATCH_NONE),
        (ScheduledAtBefore(T0), Q(scheduled_at__lt=T0)),
        (ScheduledAtAfter(T0), Q(scheduled_at__gt=T0)),
        (ScheduledAtEqual(T0), Q(scheduled_at=T0)),
        (And(()), MATCH_ALL),
        (Or(()), MATCH_NONE),
        (Not(IdEquals(7)), ~Q(pk=7)),
        (And((IdEquals(1), ExecutorEqual("x"))), Q(pk=1) & Q(executor="x")),
        (Or((IdEquals(1), ExecutorEqual("x"))), Q(pk=1) | Q(executor="x")),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Query) else "",
)
def test_each_node_compiles_to_the_expected_q(node: Query, expected: Q) -> None:
    assert compile_query(node) == expected


def test_nesting_keeps_the_tree_shape() -> None:
    # (a OR b) AND NOT (c AND d): a flat SQL string would lose these parentheses.
    a, b, c, d = IdEquals(1), IdEquals(2), ExecutorEqual("x"), StatusEqual(JobStatus.COMPLETE)
    compiled = compile_query(And((Or((a, b)), Not(And((c, d))))))
    assert compiled == (Q(pk=1) | Q(pk=2)) & ~(Q(executor="x") & Q(status="complete"))
    assert compiled != Q(pk=1) | Q(pk=2) & ~(Q(executor="x") & Q(status="complete"))


def test_operators_build_the_same_trees_as_the_nodes() -> None:
    a, b = Where.id_equals(1), Where.status_equals("complete")
    assert (a & b) == And((a, b))
    assert (a | b) == Or((a, b))
    assert ~a == Not(a)
    with pytest.raises(TypeError, match="Cannot combine a query with 3"):
        a & 3  # type: ignore[operator]


def test_compiling_does_not_touch_the_database() -> None:
    # No django_db mark: any database access here would fail the test.
    compile_query(Or((And((IdIn((1, 2)), TagsAllOf(("a",)))), Not(DataEquals({"k": [1]})))))


def test_compiling_something_that_is_not_a_node_fails_clearly() -> None:
    with pytest.raises(TypeError, match="not a query node"):
        compile_query("status = 'complete'")  # type: ignore[arg-type]


# -- the same trees on the database -------------------------------------------------------

ROWS = [
    # executor, status, data, metadata, tags, minutes after T0
    ("alpha", "scheduled", {"user": 1, "kind": "a"}, None, ["red"], 0),
    ("alpha", "complete", {"kind": "a", "user": 2}, {"req": "x"}, ["red", "blue"], 10),
    ("alpha", "retryable", None, {"req": "y", "n": None}, [], 20),
    ("beta", "scheduled", [1, 2, 3], None, ["blue"], 30),
    ("beta", "discarded", {"user": 1, "kind": "a"}, {"req": "x"}, ["green", "red"], 40),
    ("beta", "cancelled", "text", [None], ["blue", "green"], 50),
    ("gamma", "executing", {"nested": {"b": 2, "a": 1}}, {"req": "x"}, ["red"], 60),
    ("gamma", "scheduled", 5, 1.5, ["a b", "ünï"], 70),
]


@pytest.fixture
def rows(db: None) -> list[int]:
    """The ids of ROWS, in order, inserted as JobRecords."""
    ids = []
    for executor, status, data, metadata, tags, minutes in ROWS:
        record = JobRecord.objects.create(
            executor=f"compiler.{executor}",
            status=status,
            data=data,
            metadata=metadata,
            tags=tags,
            scheduled_at=T0 + timedelta(minutes=minutes),
            attempt=1 if status != "scheduled" else 0,
        )
        ids.append(record.pk)
    return ids


def _run(query: Query) -> list[int]:
    return [job.id for job in DjangoBackend().query(query)]


def _pick(ids: list[int], *indexes: int) -> list[int]:
    return [ids[i] for i in indexes]


def test_empty_and_matches_every_row_and_empty_or_none(rows: list[int]) -> None:
    assert _run(And(())) == rows
    assert _run(Where.all()) == rows
    assert _run(Or(())) == []
    assert _run(Not(Or(()))) == rows
    assert _run(Not(And(()))) == []
    assert _run(And((ExecutorEqual("compiler.beta"), Or(())))) == []
    assert _run(Or((ExecutorEqual("compiler.beta"), Or(())))) == _pick(rows, 3, 4, 5)


def test_id_in_with_several_ids(rows: list[int]) -> None:
    assert _run(Where.id_in([rows[5], rows[0], rows[3]])) == _pick(rows, 0, 3, 5)
    assert _run(Where.id_in([rows[2]])) == _pick(rows, 2)
    assert _run(Where.id_in([])) == []
    assert _run(Where.id_in([rows[1], 10**15])) == _pick(rows, 1)
    assert _run(~Where.id_in([rows[1], rows[2]])) == _pick(rows, 0, 3, 4, 5, 6, 7)


def test_tags_all_of_and_one_of(rows: list[int]) -> None:
    assert _run(Where.tagged_by_all_of(["red"])) == _pick(rows, 0, 1, 4, 6)
    assert _run(Where.tagged_by_all_of(["red", "blue"])) == _pick(rows, 1)
    assert _run(Where.tagged_by_all_of(["blue", "green"])) == _pick(rows, 5)
    assert _run(Where.tagged_by_one_of(["green", "blue"])) == _pick(rows, 1, 3, 4, 5)
    assert _run(Where.tagged_by_one_of(["nope"])) == []
    assert _run(Where.tagged_by_all_of([])) == rows
    assert _run(Where.tagged_by_one_of([])) == []
    # Whole tags only: no substring or JSON-text matches.
    assert _run(Where.tagged_by_one_of(["re", "a"])) == []
    assert _run(Where.tagged_by_one_of(["a b"])) == _pick(rows, 7)
    assert _run(Where.tagged_by_all_of(["ünï", "a b"])) == _pick(rows, 7)
    assert _run(~Where.tagged_by_one_of(["red", "blue"])) == _pick(rows, 2, 7)


def test_data_and_metadata_are_exact_json_equality(rows: list[int]) -> None:
    # Key order does not matter, extra or missing keys do.
    assert _run(Where.data_equals({"kind": "a", "user": 1})) == _pick(rows, 0, 4)
    assert _run(Where.data_equals({"user": 1})) == []
    assert _run(Where.data_equals({"user": 1, "kind": "a", "x": None})) == []
    assert _run(Where.data_equals({"nested": {"a": 1, "b": 2}})) == _pick(rows, 6)
    assert _run(Where.data_equals([1, 2, 3])) == _pick(rows, 3)
    assert _run(Where.data_equals([3, 2, 1])) == []
    assert _run(Where.data_equals("text")) == _pick(rows, 5)
    assert _run(Where.data_equals(5)) == _pick(rows, 7)
    assert _run(Where.data_equals(None)) == _pick(rows, 2)
    assert _run(Where.metadata_equals({"req": "x"})) == _pick(rows, 1, 4, 6)
    assert _run(Where.metadata_equals({"n": None, "req": "y"})) == _pick(rows, 2)
    assert _run(Where.metadata_equals({"req": "y"})) == []
    assert _run(Where.metadata_equals([None])) == _pick(rows, 5)
    assert _run(Where.metadata_equals(1.5)) == _pick(rows, 7)
    assert _run(Where.metadata_equals(None)) == _pick(rows, 0, 3)


def test_negated_json_equality_includes_rows_without_data(rows: list[int]) -> None:
    # SQL's three-valued logic would drop NULL rows from NOT (data = …); the tree says "all
    # jobs whose data is not this", which includes jobs without data.
    expected = [r for i, r in enumerate(rows) if i not in (0, 4)]
    assert _run(~Where.data_equals({"user": 1, "kind": "a"})) == expected
    assert _run(~Where.metadata_equals({"req": "x"})) == _pick(rows, 0, 2, 3, 5, 7)
    assert _run(~Where.data_equals(None)) == [r for i, r in enumerate(rows) if i != 2]


def test_status_and_scheduled_at(rows: list[int]) -> None:
    assert _run(Where.status_equals("scheduled")) == _pick(rows, 0, 3, 7)
    assert _run(Where.status_equals(JobStatus.EXECUTING)) == _pick(rows, 6)
    at = T0 + timedelta(minutes=30)
    assert _run(Where.scheduled_at_before(at)) == _pick(rows, 0, 1, 2)
    assert _run(Where.scheduled_at_after(at)) == _pick(rows, 4, 5, 6, 7)
    assert _run(Where.scheduled_at_equals(at)) == _pick(rows, 3)
    # The same instant in another time zone is the same moment.
    other_zone = at.astimezone(datetime.now().astimezone().tzinfo)
    assert _run(Where.scheduled_at_equals(other_zone)) == _pick(rows, 3)


def test_nested_not_and_or_precedence(rows: list[int]) -> None:
    alpha = ExecutorEqual("compiler.alpha")
    beta = ExecutorEqual("compiler.beta")
    red = Where.tagged_by_all_of(["red"])
    scheduled = Where.status_equals("scheduled")
    # alpha OR (beta AND red)  vs  (alpha OR beta) AND red
    assert _run(alpha | (beta & red)) == _pick(rows, 0, 1, 2, 4)
    assert _run((alpha | beta) & red) == _pick(rows, 0, 1, 4)
    # NOT (alpha OR beta) AND NOT scheduled
    assert _run(~(alpha | beta) & ~scheduled) == _pick(rows, 6)
    # NOT (NOT red OR scheduled) == red AND NOT scheduled
    assert _run(~(~red | scheduled)) == _pick(rows, 1, 4, 6)
    # Deep nesting: (beta AND (scheduled OR NOT (red OR blue))) OR id = row 7
    blue = Where.tagged_by_one_of(["blue"])
    tree = (beta & (scheduled | ~(red | blue))) | Where.id_equals(rows[7])
    assert _run(tree) == _pick(rows, 3, 7)
    # Double negation is the identity.
    assert _run(~~(alpha & red)) == _pick(rows, 0, 1)


def _random_tree(rnd: random.Random, ids: list[int], depth: int) -> Query:
    leaves: list[Query] = [
        ExecutorEqual(f"compiler.{rnd.choice(['alpha', 'beta', 'gamma'])}"),
        StatusEqual(JobStatus(rnd.choice(ROWS)[1])),
        DataEquals(rnd.choice(ROWS)[2]),
        MetadataEquals(rnd.choice(ROWS)[3]),
        IdEquals(rnd.choice(ids)),
        IdIn(tuple(rnd.sample(ids, rnd.randint(0, 4)))),
        TagsAllOf(tuple(rnd.sample(["red", "blue", "green"], rnd.randint(0, 2)))),
        TagsOneOf(tuple(rnd.sample(["red", "blue", "green"], rnd.randint(0, 2)))),
        ScheduledAtBefore(T0 + timedelta(minutes=rnd.randint(0, 70))),
        ScheduledAtAfter(T0 + timedelta(minutes=rnd.randint(0, 70))),
        ScheduledAtEqual(T0 + timedelta(minutes=10 * rnd.randint(0, 7))),
    ]
    if depth == 0 or rnd.random() < 0.3:
        return rnd.choice(leaves)
    kind = rnd.choice(["not", "and", "or"])
    if kind == "not":
        return Not(_random_tree(rnd, ids, depth - 1))
    children = tuple(_random_tree(rnd, ids, depth - 1) for _ in range(rnd.randint(0, 3)))
    return And(children) if kind == "and" else Or(children)


def test_random_nested_trees_agree_with_the_reference_evaluation(rows: list[int]) -> None:
    """``Query.matches`` (what the in-memory backend uses) is the reference semantics; the
    database must select exactly the same rows for every tree."""
    jobs = [to_job(record) for record in JobRecord.objects.order_by("id")]
    rnd = random.Random(20300101)
    for tree in itertools.islice(iter(lambda: _random_tree(rnd, rows, 4), None), 120):
        expected = [job.id for job in jobs if tree.matches(job)]
        assert _run(tree) == expected, tree
