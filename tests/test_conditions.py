"""Tests of the condition DSL (automation.conditions): pure Python, no database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation import conditions
from automation.conditions import (
    MAX_DEPTH,
    OPERATORS,
    CompiledCondition,
    ConditionInvalid,
    ConditionIssue,
    compile_cache_clear,
    compile_cached,
    compile_condition,
    evaluate,
    resolve_path,
    validate_condition,
)


def leaf(field: str, operator: str, *value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"field": field, "operator": operator}
    if value:
        node["value"] = value[0]
    return node


def check(field_value: Any, operator: str, *value: Any) -> bool:
    """Evaluate one leaf against a context holding ``field_value`` at ``x``."""
    return evaluate(leaf("x", operator, *value), {"x": field_value})


# --------------------------------------------------------------------------- paths


CONTEXT = {
    "lead": {
        "company_name": "Tech Corp",
        "owner": {"email": "rep@example.com", "teams": ["sales", "emea"]},
        "zero": 0,
    },
    "items": [{"name": "first"}, {"name": "second"}],
    "pair": ("a", "b"),
    "numbered": {"0": "key zero"},
    "empty": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("lead.company_name", "Tech Corp"),
        ("lead.owner.email", "rep@example.com"),
        ("lead.owner.teams.1", "emea"),
        ("lead.zero", 0),
        ("items.0.name", "first"),
        ("items.1.name", "second"),
        ("pair.1", "b"),
        ("numbered.0", "key zero"),
        ("items.2.name", None),
        ("items.name", None),
        ("lead.missing", None),
        ("lead.missing.deeper", None),
        ("lead.company_name.upper", None),
        ("empty.anything", None),
        ("lead..owner", None),
        ("items[0].name", None),
        ("", None),
    ],
)
def test_resolve_path(path: str, expected: Any) -> None:
    assert resolve_path(CONTEXT, path) == expected


@pytest.mark.parametrize("context", [None, [], "text", 3, object(), {"lead": []}])
def test_resolve_path_on_anything_gives_none(context: Any) -> None:
    assert resolve_path(context, "lead.name") is None


def test_leaf_reads_dot_paths_and_list_indexes() -> None:
    assert evaluate(leaf("lead.owner.email", "endswith", "@example.com"), CONTEXT)
    assert evaluate(leaf("items.1.name", "eq", "second"), CONTEXT)
    assert evaluate(leaf("items.5.name", "eq", None), CONTEXT)


# --------------------------------------------------------------------------- operators


OPERATOR_CASES = [
    # eq / ne, numbers by value, bool is not a number
    (1, "eq", 1, True),
    (1, "eq", 1.0, True),
    (Decimal("1"), "eq", 1, True),
    ("1.00", "eq", 1, True),
    (1, "eq", "1.00", True),
    (Decimal("1.50"), "eq", "1.5", True),
    (0.1, "eq", "0.1", True),
    ("2e3", "eq", 2000, True),
    ("1.0", "eq", "1", False),
    ("abc", "eq", 1, False),
    (" 1", "eq", 1, False),
    (True, "eq", 1, False),
    (1, "eq", True, False),
    (True, "eq", True, True),
    (False, "eq", 0, False),
    (None, "eq", None, True),
    (None, "eq", 0, False),
    ("", "eq", None, False),
    ("Tech", "eq", "Tech", True),
    ("Tech", "eq", "tech", False),
    ([1, "a"], "eq", [1.0, "a"], True),
    ([1, "a"], "eq", ["a", 1], False),
    ([True], "eq", [1], False),
    ({"a": 1}, "eq", {"a": "1.0"}, True),
    ({"a": 1}, "eq", {"a": 1, "b": 2}, False),
    (float("nan"), "eq", float("nan"), False),
    (Decimal("NaN"), "eq", 1, False),
    (1, "ne", 1.0, False),
    (1, "ne", 2, True),
    (None, "ne", 5, True),
    (True, "ne", 1, True),
    # dates and datetimes
    ("2026-11-21", "eq", "2026-11-21", True),
    ("2026-11-21T10:00:00+00:00", "eq", "2026-11-21T10:00:00Z", True),
    ("2026-11-21T12:00:00+02:00", "eq", "2026-11-21T10:00:00Z", True),
    ("2026-11-21T10:00:00", "eq", "2026-11-21T10:00:00Z", True),
    ("2026-11-21 10:00:00+00:00", "eq", "2026-11-21T10:00:00Z", True),
    ("2026-11-21T23:30:00-05:00", "eq", "2026-11-21", True),
    ("2026-11-21T10:00:00Z", "eq", "2026-11-22", False),
    (date(2026, 11, 21), "eq", "2026-11-21", True),
    (datetime(2026, 11, 21, 10, tzinfo=UTC), "eq", "2026-11-21T11:00:00+01:00", True),
    ("2026-11-21", "eq", 20261121, False),
    ("2026-13-01", "eq", "2026-13-01", True),
    # ordering
    (10, "gt", 9, True),
    ("10", "gt", 9, True),
    ("10", "gt", "9", False),
    (Decimal("1000000.00"), "gte", 1000000, True),
    (999999.99, "gte", 1000000, False),
    (5, "lt", 5.5, True),
    (5, "lte", "5.0", True),
    (float("inf"), "gt", 10**30, True),
    ("b", "gt", "a", True),
    ("B", "gt", "a", False),
    ("2026-11-22", "gt", "2026-11-21", True),
    ("2026-11-21T10:00:00Z", "gt", "2026-11-21T11:00:00+02:00", True),
    ("2026-11-21T23:59:59Z", "gt", "2026-11-21", False),
    ("2026-11-21T23:59:59Z", "gte", "2026-11-21", True),
    ("2026-11-21T00:00:00", "lt", "2026-11-22", True),
    (datetime(2026, 11, 21, 10), "lt", "2026-11-21T10:00:01Z", True),
    ("2026-11-22", "gt", date(2026, 11, 21), True),
    ("2026-11-22", "gt", "2026-11-21x", True),
    # ordering with null or incompatible kinds is false
    (None, "gt", 1, False),
    (None, "lt", 1, False),
    (None, "gte", "a", False),
    (None, "lte", "2026-01-01", False),
    (True, "gt", 0, False),
    (False, "lte", 1, False),
    ("abc", "gt", 1, False),
    ("abc", "lt", 1, False),
    ("2026-11-21", "gt", 1, False),
    ({"a": 1}, "gt", 0, False),
    ([1], "lte", 2, False),
    (float("nan"), "gt", 0, False),
    (float("nan"), "lte", 0, False),
    (date(2026, 1, 1), "lt", "soon", False),
    # in / not_in
    (2, "in", [1, 2, 3], True),
    ("2.0", "in", [1, 2, 3], True),
    (4, "in", [1, 2, 3], False),
    (None, "in", [None], True),
    (None, "in", [1], False),
    (True, "in", [1, 0], False),
    ("2026-11-21T00:00:00Z", "in", ["2026-11-21"], True),
    ([1, 2], "in", [[1, 2], [3]], True),
    (4, "in", [], False),
    (4, "not_in", [1, 2, 3], True),
    (2, "not_in", [1, 2, 3], False),
    (None, "not_in", [1], True),
    # contains
    ("Tech Corp", "contains", "Tech", True),
    ("tech corp", "contains", "Tech", False),
    ("Tech Corp", "contains", "", True),
    (["a", "b"], "contains", "b", True),
    ([1, 2], "contains", "2.0", True),
    ([1, 2], "contains", True, False),
    ([[1], [2]], "contains", [2], True),
    ("abc1", "contains", 1, False),
    (None, "contains", "a", False),
    ({"a": 1}, "contains", "a", False),
    (12, "contains", 1, False),
    # startswith / endswith
    ("Tech Corp", "startswith", "Tech", True),
    ("Tech Corp", "startswith", "Corp", False),
    ("Tech Corp", "endswith", "Corp", True),
    ("Tech Corp", "endswith", "Tech", False),
    (123, "startswith", "1", False),
    (None, "endswith", "", False),
    (["Tech"], "startswith", "Tech", False),
]


@pytest.mark.parametrize(("actual", "operator", "value", "expected"), OPERATOR_CASES)
def test_operator(actual: Any, operator: str, value: Any, expected: bool) -> None:
    assert check(actual, operator, value) is expected


@pytest.mark.parametrize(
    ("actual", "value", "expected"),
    [
        ("x", (), True),
        (0, (), True),
        (False, (), True),
        ("", (), True),
        (None, (), False),
        ("x", (True,), True),
        (None, (True,), False),
        ("x", (False,), False),
        (None, (False,), True),
    ],
)
def test_exists(actual: Any, value: tuple[Any, ...], expected: bool) -> None:
    assert check(actual, "exists", *value) is expected


def test_exists_on_missing_path() -> None:
    assert not evaluate(leaf("lead.nope", "exists"), CONTEXT)
    assert evaluate(leaf("lead.nope", "exists", False), CONTEXT)


CHANGES = {
    "stage": {"old": "open", "new": "won"},
    "amount": {"old": 100, "new": "100.00"},
    "deal.owner": {"old": 1, "new": 2},
    "flag": True,
}


@pytest.mark.parametrize(
    ("field", "changes", "expected"),
    [
        ("stage", CHANGES, True),
        ("deal.stage", CHANGES, True),
        ("deal.owner", CHANGES, True),
        ("amount", CHANGES, False),
        ("deal.amount", CHANGES, False),
        ("flag", CHANGES, True),
        ("status", CHANGES, False),
        ("deal.status", CHANGES, False),
        ("lead.deal.stage", CHANGES, False),
        ("stage", None, False),
        ("stage", ["stage"], False),
        ("stage", {}, False),
    ],
)
def test_changed(field: str, changes: Any, expected: bool) -> None:
    assert evaluate(leaf(field, "changed"), {"changes": changes}) is expected


def test_changed_without_changes_key() -> None:
    assert not evaluate(leaf("stage", "changed"), {"stage": "won"})


def test_operators_tuple_lists_every_operator() -> None:
    assert OPERATORS == (
        "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in",
        "contains", "startswith", "endswith", "exists", "changed",
    )  # fmt: skip


# --------------------------------------------------------------------------- logic


TRUE = leaf("n", "eq", 1)
FALSE = leaf("n", "eq", 2)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (None, True),
        ({}, True),
        (TRUE, True),
        (FALSE, False),
        ({"and": []}, True),
        ({"and": [TRUE]}, True),
        ({"and": [TRUE, TRUE]}, True),
        ({"and": [TRUE, FALSE]}, False),
        ({"or": [FALSE]}, False),
        ({"or": [FALSE, TRUE]}, True),
        ({"not": TRUE}, False),
        ({"not": FALSE}, True),
        ({"not": {"not": TRUE}}, True),
        ({"and": [TRUE, {"or": [FALSE, {"not": FALSE}]}]}, True),
        ({"or": [{"and": [TRUE, FALSE]}, {"and": [FALSE, TRUE]}]}, False),
        ({"not": {"and": []}}, False),
    ],
)
def test_logic(node: Any, expected: bool) -> None:
    assert evaluate(node, {"n": 1}) is expected


class RecordingContext(Mapping[str, Any]):
    """A context that records which top-level keys were read."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.read.append(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_evaluation_short_circuits_but_trace_visits_every_node() -> None:
    condition = compile_condition({"or": [leaf("a", "eq", 1), leaf("b", "eq", 1)]})
    context = RecordingContext({"a": 1, "b": 2})
    assert condition(context)
    assert context.read == ["a"]

    context.read.clear()
    assert condition.trace(context)["result"] is True
    assert context.read == ["a", "b"]

    and_condition = compile_condition({"and": [leaf("a", "eq", 2), leaf("b", "eq", 2)]})
    context.read.clear()
    assert not and_condition(context)
    assert context.read == ["a"]


def test_trace_tree() -> None:
    condition = compile_condition(
        {
            "and": [
                leaf("lead.annual_revenue", "gte", 1000000),
                {"not": leaf("lead.status", "in", ["lost", "spam"])},
                {"or": [leaf("stage", "changed"), leaf("lead.owner", "exists")]},
            ]
        }
    )
    context = {
        "lead": {"annual_revenue": "1500000.00", "status": "new"},
        "changes": {"stage": {"old": "a", "new": "b"}},
    }
    assert condition.trace(context) == {
        "path": "conditions",
        "op": "and",
        "result": True,
        "children": [
            {
                "path": "conditions.and[0]",
                "result": True,
                "field": "lead.annual_revenue",
                "operator": "gte",
                "expected": 1000000,
                "actual": "1500000.00",
            },
            {
                "path": "conditions.and[1]",
                "op": "not",
                "result": True,
                "children": [
                    {
                        "path": "conditions.and[1].not",
                        "result": False,
                        "field": "lead.status",
                        "operator": "in",
                        "expected": ["lost", "spam"],
                        "actual": "new",
                    }
                ],
            },
            {
                "path": "conditions.and[2]",
                "op": "or",
                "result": True,
                "children": [
                    {
                        "path": "conditions.and[2].or[0]",
                        "result": True,
                        "field": "stage",
                        "operator": "changed",
                        "expected": None,
                        "actual": None,
                        "change": {"old": "a", "new": "b"},
                    },
                    {
                        "path": "conditions.and[2].or[1]",
                        "result": False,
                        "field": "lead.owner",
                        "operator": "exists",
                        "expected": True,
                        "actual": None,
                    },
                ],
            },
        ],
    }


def test_trace_of_empty_condition() -> None:
    for node in (None, {}):
        assert compile_condition(node).trace({}) == {
            "path": "conditions",
            "op": "always",
            "result": True,
            "children": [],
        }


def test_trace_uses_given_root_path() -> None:
    condition = compile_condition({"and": [TRUE]}, path="steps[2].conditions")
    assert condition.trace({"n": 1})["children"][0]["path"] == "steps[2].conditions.and[0]"


# --------------------------------------------------------------------------- validation


def issues_of(node: Any) -> list[tuple[str, str, str]]:
    return [(issue.path, issue.message, issue.code) for issue in validate_condition(node)]


def test_spec_example_message() -> None:
    node = {"and": [leaf("a", "eq", 1), leaf("b", "equals", 1)]}
    [issue] = validate_condition(node)
    assert issue.path == "conditions.and[1].operator"
    assert issue.message.startswith("unknown operator 'equals'")
    assert issue.message == "unknown operator 'equals' (did you mean 'eq'?)"
    assert issue.code == "UNKNOWN_OPERATOR"
    assert str(issue).startswith("conditions.and[1].operator: unknown operator 'equals'")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ([], [("conditions", "condition must be an object, not array", "INVALID_NODE")]),
        ("x", [("conditions", "condition must be an object, not string", "INVALID_NODE")]),
        (
            {"and": [None]},
            [("conditions.and[0]", "condition must be an object, not null", "INVALID_NODE")],
        ),
        ({"and": [{}]}, [("conditions.and[0]", "empty condition object", "INVALID_NODE")]),
        (
            {"field": "a", "and": []},
            [
                (
                    "conditions",
                    "node has both 'field' and 'and'; a node is either a leaf ('field', "
                    "'operator', 'value') or one of 'and', 'or', 'not'",
                    "INVALID_NODE",
                )
            ],
        ),
        (
            {"and": [], "or": [TRUE]},
            [
                (
                    "conditions",
                    "node has both 'and' and 'or'; a node is either a leaf ('field', "
                    "'operator', 'value') or one of 'and', 'or', 'not'",
                    "INVALID_NODE",
                )
            ],
        ),
        (
            {"field": "a", "operator": "eq", "value": 1, "label": "x"},
            [("conditions.label", "unknown key 'label'", "UNKNOWN_KEY")],
        ),
        (
            {"and": [TRUE], "nto": FALSE},
            [("conditions.nto", "unknown key 'nto' (did you mean 'not'?)", "UNKNOWN_KEY")],
        ),
        (
            {"feild": "a", "operator": "eq", "value": 1},
            [
                ("conditions.feild", "unknown key 'feild' (did you mean 'field'?)",
                 "UNKNOWN_KEY"),
                ("conditions.field", "key 'field' is required", "MISSING_KEY"),
            ],
        ),
        (
            {"and": {"field": "a"}},
            [("conditions.and", "'and' needs a list of conditions, not object",
              "INVALID_NODE")],
        ),
        (
            {"or": "a"},
            [("conditions.or", "'or' needs a list of conditions, not string", "INVALID_NODE")],
        ),
        (
            {"or": []},
            [("conditions.or", "'or' needs at least one condition (an empty 'or' is never "
              "true)", "INVALID_NODE")],
        ),
        (
            {"not": [TRUE]},
            [("conditions.not", "'not' needs a condition object, not array", "INVALID_NODE")],
        ),
        ({"not": {}}, [("conditions.not", "empty condition object", "INVALID_NODE")]),
        (
            {"operator": "eq", "value": 1},
            [("conditions.field", "key 'field' is required", "MISSING_KEY")],
        ),
        (
            {"field": "a", "value": 1},
            [("conditions.operator", "key 'operator' is required", "MISSING_KEY")],
        ),
        (
            leaf("", "eq", 1),
            [("conditions.field", "field must be a non-empty string", "INVALID_FIELD")],
        ),
        (
            leaf(3, "eq", 1),  # type: ignore[arg-type]
            [("conditions.field", "field must be a non-empty string, not number",
              "INVALID_FIELD")],
        ),
        *[
            (
                leaf(path, "eq", 1),
                [("conditions.field", f"malformed field path {path!r}: use names separated "
                  "by single dots, without spaces or brackets (e.g. 'items.0.name')",
                  "INVALID_FIELD")],
            )
            for path in ("lead..name", ".lead", "lead.", "items[0].name", "lead name",
                         "a" * 256)
        ],
        (
            leaf("a", 1, 1),  # type: ignore[arg-type]
            [("conditions.operator", "operator must be a string, not number",
              "UNKNOWN_OPERATOR")],
        ),
        (
            leaf("a", "equals", 1),
            [("conditions.operator", "unknown operator 'equals' (did you mean 'eq'?)",
              "UNKNOWN_OPERATOR")],
        ),
        (
            leaf("a", "EQ", 1),
            [("conditions.operator", "unknown operator 'EQ' (did you mean 'eq'?)",
              "UNKNOWN_OPERATOR")],
        ),
        (
            leaf("a", ">=", 1),
            [("conditions.operator", "unknown operator '>=' (did you mean 'gte'?)",
              "UNKNOWN_OPERATOR")],
        ),
        (
            leaf("a", "containz", 1),
            [("conditions.operator", "unknown operator 'containz' (did you mean "
              "'contains'?)", "UNKNOWN_OPERATOR")],
        ),
        (
            leaf("a", "frobnicate", 1),
            [("conditions.operator", "unknown operator 'frobnicate'", "UNKNOWN_OPERATOR")],
        ),
        *[
            (
                leaf("a", operator),
                [("conditions.value", f"operator {operator!r} needs a value", "MISSING_KEY")],
            )
            for operator in ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "startswith",
                             "endswith")
        ],
        (leaf("a", "in"), [("conditions.value", "operator 'in' needs a list value",
                            "MISSING_KEY")]),
        (
            leaf("a", "in", "x"),
            [("conditions.value", "operator 'in' needs a list value", "INVALID_VALUE")],
        ),
        (
            leaf("a", "not_in", {"a": 1}),
            [("conditions.value", "operator 'not_in' needs a list value", "INVALID_VALUE")],
        ),
        *[
            (
                leaf("a", operator, value),
                [("conditions.value", f"operator {operator!r} needs a number, string or "
                  f"date value, not {kind}", "INVALID_VALUE")],
            )
            for operator, value, kind in (
                ("gt", {"a": 1}, "object"),
                ("gte", [1], "array"),
                ("lt", None, "null"),
                ("lte", True, "boolean"),
            )
        ],
        (
            leaf("a", "startswith", 1),
            [("conditions.value", "operator 'startswith' needs a string value, not number",
              "INVALID_VALUE")],
        ),
        (
            leaf("a", "endswith", None),
            [("conditions.value", "operator 'endswith' needs a string value, not null",
              "INVALID_VALUE")],
        ),
        (
            leaf("a", "changed", True),
            [("conditions.value", "operator 'changed' takes no value", "INVALID_VALUE")],
        ),
        (
            leaf("a", "exists", "yes"),
            [("conditions.value", "operator 'exists' needs a boolean value, not string",
              "INVALID_VALUE")],
        ),
        (
            {"and": [TRUE, {"or": [FALSE, {"not": leaf("a", "in", 3)}]}]},
            [("conditions.and[1].or[1].not.value", "operator 'in' needs a list value",
              "INVALID_VALUE")],
        ),
        (
            {"and": [leaf("a", "equals", 1), {"or": []}, leaf("b", "gt", {})]},
            [
                ("conditions.and[0].operator",
                 "unknown operator 'equals' (did you mean 'eq'?)", "UNKNOWN_OPERATOR"),
                ("conditions.and[1].or",
                 "'or' needs at least one condition (an empty 'or' is never true)",
                 "INVALID_NODE"),
                ("conditions.and[2].value",
                 "operator 'gt' needs a number, string or date value, not object",
                 "INVALID_VALUE"),
            ],
        ),
    ],
)  # fmt: skip
def test_validation_messages(node: Any, expected: list[tuple[str, str, str]]) -> None:
    assert issues_of(node) == expected


@pytest.mark.parametrize(
    "node",
    [
        None,
        {},
        {"and": []},
        leaf("lead.owner.email", "eq", "a@b.c"),
        leaf("items.0.name", "eq", None),
        leaf("a", "eq", {"nested": [1, 2]}),
        leaf("a", "ne", []),
        leaf("a", "gt", "2026-11-21"),
        leaf("a", "lte", Decimal("1.5")),
        leaf("a", "lt", date(2026, 1, 1)),
        leaf("a", "in", []),
        leaf("a", "not_in", [1, "x", None]),
        leaf("a", "contains", 1),
        leaf("a", "exists"),
        leaf("a", "exists", False),
        leaf("a", "changed"),
        leaf("données.prénom", "eq", "x"),
        leaf("payload.order-id", "eq", "x"),
    ],
)
def test_valid_conditions_have_no_issues(node: Any) -> None:
    assert validate_condition(node) == []


def nested_not(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = TRUE
    for _ in range(depth):
        node = {"not": node}
    return node


def test_nesting_depth_limit() -> None:
    assert validate_condition(nested_not(MAX_DEPTH)) == []
    too_deep = nested_not(MAX_DEPTH + 1)
    assert issues_of(too_deep) == [
        ("conditions" + ".not" * (MAX_DEPTH + 1),
         f"conditions nested deeper than {MAX_DEPTH} levels", "TOO_DEEP"),
    ]  # fmt: skip
    assert issues_of(nested_not(5000))[0][2] == "TOO_DEEP"


def test_value_depth_limit() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    assert issues_of(leaf("a", "eq", value)) == [
        ("conditions.value", f"value nested deeper than {MAX_DEPTH} levels", "TOO_DEEP")
    ]
    assert issues_of(leaf("a", "in", value))[0][2] == "TOO_DEEP"
    assert validate_condition(leaf("a", "eq", value[0])) == []


def test_validation_uses_given_root_path() -> None:
    [issue] = validate_condition({"or": []}, path="triggers[0].conditions")
    assert issue.path == "triggers[0].conditions.or"


def test_issue_is_frozen() -> None:
    issue = ConditionIssue(path="conditions", message="m", code="INVALID_NODE")
    with pytest.raises(AttributeError):
        issue.code = "other"  # type: ignore[misc]


def test_compile_rejects_invalid_conditions() -> None:
    node = {"and": [TRUE, leaf("b", "equals", 1)]}
    with pytest.raises(ConditionInvalid) as caught:
        compile_condition(node)
    assert caught.value.issues == validate_condition(node)
    assert str(caught.value) == (
        "conditions.and[1].operator: unknown operator 'equals' (did you mean 'eq'?)"
    )
    with pytest.raises(ConditionInvalid):
        evaluate({"or": []}, {})


def test_compiled_condition_is_reusable() -> None:
    condition = compile_condition(leaf("n", "gte", 10))
    assert isinstance(condition, CompiledCondition)
    assert [condition({"n": n}) for n in (9, 10, "11", None)] == [False, True, True, False]


# --------------------------------------------------------------------------- cache


def test_compile_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    compile_cache_clear()
    first = compile_cached((1, 0), TRUE)
    assert compile_cached((1, 0), TRUE) is first
    assert compile_cached((1, 1), FALSE) is not first
    assert not compile_cached((1, 1), FALSE)({"n": 1})

    monkeypatch.setattr(conditions, "COMPILE_CACHE_SIZE", 2)
    compile_cached((1, 0), TRUE)  # most recently used now
    compile_cached((2, 0), TRUE)  # evicts (1, 1)
    assert compile_cached((1, 0), TRUE) is first
    assert len(conditions._cache) == 2
    assert list(conditions._cache) == [(2, 0), (1, 0)]

    with pytest.raises(ConditionInvalid):
        compile_cached((3, 0), {"or": []})
    assert (3, 0) not in conditions._cache
    compile_cache_clear()
    assert not conditions._cache


# --------------------------------------------------------------------------- robustness


class ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


class ExplodingValue:
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("boom")

    __hash__ = object.__hash__


ALL_OPERATOR_LEAVES = [
    leaf("x.y", "eq", 1),
    leaf("x.y", "ne", "a"),
    leaf("x.y", "gt", "2026-01-01"),
    leaf("x.y", "gte", 1),
    leaf("x.y", "lt", "b"),
    leaf("x.y", "lte", 2.5),
    leaf("x.y", "in", [1, "a", None, [1]]),
    leaf("x.y", "not_in", [{"a": 1}]),
    leaf("x.y", "contains", "a"),
    leaf("x.y", "contains", [1]),
    leaf("x.y", "startswith", "a"),
    leaf("x.y", "endswith", "a"),
    leaf("x.y", "exists"),
    leaf("x.y", "changed"),
]


@pytest.mark.parametrize(
    "context",
    [
        None,
        [],
        "text",
        7,
        {"x": ExplodingMapping()},
        {"x": {"y": ExplodingValue()}},
        {"x": {"y": [ExplodingValue()]}},
        {"x": {"y": object()}},
        {"x": {"y": {1, 2}}},
        {"x": {"y": float("nan")}},
        {"x": {"y": Decimal("sNaN")}},
        {"x": {"y": "9999-12-31T23:59:59-23:59"}},
        {"x": {"y": "2026-02-30"}},
        {"x": {"y": "1e99999999999999999999999999"}},
        {"changes": ExplodingMapping()},
        {"changes": {"x.y": {"old": ExplodingValue(), "new": 1}}},
        ExplodingMapping(),
    ],
)
def test_evaluation_never_raises(context: Any) -> None:
    for node in ALL_OPERATOR_LEAVES:
        condition = compile_condition({"not": node})
        assert isinstance(condition(context), bool)
        trace = condition.trace(context)
        assert trace["result"] is condition(context)


# --------------------------------------------------------------------------- reference model
#
# A deliberately plain re-statement of the rules: recursive, no closures, no caching.
# The property tests check the compiled evaluator against it.


DIGITS = "0123456789"


def ref_resolve(context: Any, path: str) -> Any:
    current = context
    for segment in path.split("."):
        if isinstance(current, dict):
            current = current.get(segment)
        elif isinstance(current, list) and segment and all(c in DIGITS for c in segment):
            index = int(segment)
            current = current[index] if index < len(current) else None
        else:
            return None
    return current


def ref_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value:
            return None
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        return value
    return None


def ref_numeric_text(value: Any) -> Decimal | None:
    if not isinstance(value, str) or value == "":
        return None
    for char in value:
        if char not in "0123456789+-.eE":
            return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def ref_time(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) < 10:
        return None
    for position, char in enumerate(value[:10]):
        if position in (4, 7):
            if char != "-":
                return None
        elif char not in DIGITS:
            return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        if value[10] not in "T ":
            return None
        return ref_time(datetime.fromisoformat(value))
    except ValueError:
        return None


def ref_pair(a: Any, b: Any) -> tuple[Any, Any] | None:
    number_a = ref_number(a)
    number_b = ref_number(b)
    if number_a is not None or number_b is not None:
        if number_a is None:
            number_a = ref_numeric_text(a)
        if number_b is None:
            number_b = ref_numeric_text(b)
        if number_a is None or number_b is None:
            return None
        return number_a, number_b
    time_a = ref_time(a)
    time_b = ref_time(b)
    if time_a is not None and time_b is not None:
        if isinstance(time_a, datetime) and not isinstance(time_b, datetime):
            time_a = time_a.date()
        if isinstance(time_b, datetime) and not isinstance(time_a, datetime):
            time_b = time_b.date()
        return time_a, time_b
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None


def ref_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    pair = ref_pair(a, b)
    if pair is not None:
        return pair[0] == pair[1]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        return all(ref_equal(a[index], b[index]) for index in range(len(a)))
    if isinstance(a, dict) and isinstance(b, dict):
        if sorted(a) != sorted(b):
            return False
        return all(ref_equal(a[key], b[key]) for key in a)
    return False


def ref_order(a: Any, b: Any) -> int | None:
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return None
    pair = ref_pair(a, b)
    if pair is None:
        return None
    if pair[0] < pair[1]:
        return -1
    if pair[0] > pair[1]:
        return 1
    return 0


def ref_changed(context: Any, field: str) -> bool:
    changes = context.get("changes") if isinstance(context, dict) else None
    if not isinstance(changes, dict):
        return False
    if field in changes:
        key = field
    elif "." in field and field.split(".", 1)[1] in changes:
        key = field.split(".", 1)[1]
    else:
        return False
    entry = changes[key]
    if isinstance(entry, dict) and "old" in entry and "new" in entry:
        return not ref_equal(entry["old"], entry["new"])
    return True


def ref_leaf(node: dict[str, Any], context: Any) -> bool:
    operator = node["operator"]
    if operator == "changed":
        return ref_changed(context, node["field"])
    actual = ref_resolve(context, node["field"])
    value = node.get("value")
    if operator == "eq":
        return ref_equal(actual, value)
    if operator == "ne":
        return not ref_equal(actual, value)
    if operator == "gt":
        return ref_order(actual, value) == 1
    if operator == "gte":
        return ref_order(actual, value) in (0, 1)
    if operator == "lt":
        return ref_order(actual, value) == -1
    if operator == "lte":
        return ref_order(actual, value) in (-1, 0)
    if operator == "in":
        return any(ref_equal(actual, item) for item in value)
    if operator == "not_in":
        return not any(ref_equal(actual, item) for item in value)
    if operator == "contains":
        if isinstance(actual, str):
            return isinstance(value, str) and value in actual
        if isinstance(actual, list):
            return any(ref_equal(item, value) for item in actual)
        return False
    if operator == "startswith":
        return isinstance(actual, str) and actual.startswith(value)
    if operator == "endswith":
        return isinstance(actual, str) and actual.endswith(value)
    if operator == "exists":
        if node.get("value", True):
            return actual is not None
        return actual is None
    raise AssertionError(operator)


def ref_evaluate(node: Any, context: Any) -> bool:
    if not node:
        return True
    if "and" in node:
        return all(ref_evaluate(child, context) for child in node["and"])
    if "or" in node:
        return any(ref_evaluate(child, context) for child in node["or"])
    if "not" in node:
        return not ref_evaluate(node["not"], context)
    return ref_leaf(node, context)


def test_reference_agrees_on_the_example_table() -> None:
    """The reference model itself restates the hand-written expectations."""
    for actual, operator, value, expected in OPERATOR_CASES:
        assert ref_leaf(leaf("x", operator, value), {"x": actual}) is expected, (
            actual, operator, value,
        )  # fmt: skip


# --------------------------------------------------------------------------- properties


ZONES = [None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


def iso_datetime(moment: datetime, zulu: bool, sep: str) -> str:
    text = moment.isoformat(sep=sep)
    return text.replace("+00:00", "Z") if zulu else text


dates = st.dates(min_value=date(2026, 11, 19), max_value=date(2026, 11, 23))
datetimes = st.builds(
    lambda day, hour, minute, zone: datetime(day.year, day.month, day.day, hour, minute,
                                             tzinfo=zone),
    dates, st.sampled_from([0, 1, 10, 22, 23]), st.sampled_from([0, 30]),
    st.sampled_from(ZONES),
)  # fmt: skip
numbers = st.one_of(
    st.integers(-3, 3),
    st.integers(),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -2.5, 0.1, 1e16, 1e-7]),
    st.floats(allow_nan=False),
)
decimals = st.decimals(min_value=-5, max_value=5, places=2, allow_nan=False)
# A small pool of values that meet each other often (equal, ordered, mixed kinds) ...
ORDERED_POOL = [
    0, 1, 2, -1, 1.0, 1.5, 0.1, Decimal("1.50"), Decimal("2"),
    "1", "1.0", "1.00", "1.5", "01", "2e0", ".5", "0.1",
    "a", "ab", "b", "Tech", "Tech Corp", "tech", "",
    "2026-11-21", "2026-11-22", "2026-11-21T10:00:00Z", "2026-11-21T12:00:00+02:00",
    "2026-11-21T10:00:00", "2026-11-21 23:30:00-05:00", "2026-02-30",
    date(2026, 11, 21), datetime(2026, 11, 21, 10, tzinfo=UTC), datetime(2026, 11, 22, 1),
]  # fmt: skip
POOL = [*ORDERED_POOL, True, False, None]
# ... and generated ones for the corners.
scalars = st.one_of(
    st.sampled_from(POOL),
    st.one_of(
        st.none(),
        st.booleans(),
        numbers,
        decimals,
        decimals.map(str),
        st.text(alphabet="0123456789+-.eE", max_size=5),
        st.text(alphabet="abT -:0", max_size=6),
        dates.map(date.isoformat),
        dates,
        st.builds(iso_datetime, datetimes, st.booleans(), st.sampled_from(["T", " "])),
        datetimes,
    ),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0"]), inner, max_size=2)
    ),
    max_leaves=5,
)

FIELDS = ["a", "s", "n.a", "deal.a", "items.0", "a", "s", "b", "n.b", "n.n.a", "items.1",
          "items.0.a", "missing", "n.missing.a", "deal.b", "0"]  # fmt: skip
CONTEXT_KEYS = ["a", "b", "s", "n", "items", "deal", "0"]


def contexts() -> st.SearchStrategy[dict[str, Any]]:
    """Event contexts: mostly scalars where the fields point, some gaps and odd shapes."""
    nested = st.deferred(
        lambda: st.fixed_dictionaries(
            {"a": scalars}, optional={"b": values, "n": nested | values, "0": scalars}
        )
    )
    changes = st.dictionaries(
        st.sampled_from(["a", "b", "n.a", "deal.a", "s"]),
        st.fixed_dictionaries({"old": scalars, "new": scalars}) | scalars,
        max_size=3,
    )
    return st.fixed_dictionaries(
        {"a": scalars, "s": scalars},
        optional={
            "b": values,
            "n": nested,
            "deal": nested,
            "items": st.lists(scalars | nested, max_size=3),
            "changes": changes,
            "0": scalars,
        },
    )


def leaf_nodes() -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(FIELDS)
    strings = st.sampled_from(["", "a", "T", "Tech", "1", "2026-11", "0"])
    ordered = st.one_of(
        st.sampled_from(ORDERED_POOL),
        numbers,
        decimals,
        decimals.map(str),
        strings,
        dates.map(date.isoformat),
        st.builds(iso_datetime, datetimes, st.booleans(), st.just("T")),
    )
    return st.one_of(
        st.builds(leaf, field, st.sampled_from(["eq", "ne", "contains"]), scalars | values),
        st.builds(leaf, field, st.sampled_from(["gt", "gte", "lt", "lte"]), ordered),
        st.builds(leaf, field, st.sampled_from(["in", "not_in"]), st.lists(values, max_size=4)),
        st.builds(leaf, field, st.sampled_from(["startswith", "endswith"]), strings),
        st.builds(leaf, field, st.just("exists")),
        st.builds(leaf, field, st.just("exists"), st.booleans()),
        st.builds(leaf, field, st.just("changed")),
    )  # fmt: skip


condition_trees = st.recursive(
    leaf_nodes(),
    lambda children: st.one_of(
        st.builds(lambda items: {"and": items}, st.lists(children, max_size=4)),
        st.builds(lambda items: {"or": items}, st.lists(children, min_size=1, max_size=4)),
        st.builds(lambda child: {"not": child}, children),
    ),
    max_leaves=10,
)


def leaves_of(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "and" in node or "or" in node:
        for child in node.get("and", node.get("or")):
            yield from leaves_of(child)
    elif "not" in node:
        yield from leaves_of(node["not"])
    else:
        yield node


def put(context: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dot path, making dicts (or lists before a digit segment)."""
    segments = path.split(".")
    current: Any = context
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        fresh: Any = value if last else [] if segments[position + 1].isdigit() else {}
        if isinstance(current, list):
            index = int(segment)
            current.extend([None] * (index + 1 - len(current)))
            if last or not isinstance(current[index], type(fresh)):
                current[index] = fresh
            current = current[index]
        else:
            if last or not isinstance(current.get(segment), type(fresh)):
                current[segment] = fresh
            current = current[segment]


@st.composite
def with_context(draw: st.DrawFn, nodes: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A condition and a context whose fields mostly hold values near the leaves' values."""
    node = draw(nodes)
    context = draw(contexts())
    for item in leaves_of(node):
        value = item.get("value")
        near = [value, *value] if isinstance(value, list) else [value]
        if isinstance(value, str) and value:
            near += [value + "x", "x" + value, value[:-1]]
        if item["operator"] == "changed" and draw(st.booleans()):
            field = item["field"]
            key = draw(st.sampled_from([field, field.split(".", 1)[-1]]))
            old, new = draw(scalars), draw(scalars | st.sampled_from(POOL))
            changes = context.get("changes")
            if not isinstance(changes, dict):
                context["changes"] = changes = {}
            changes[key] = {"old": old, "new": new}
        elif draw(st.sampled_from([True, True, True, False])):
            put(context, item["field"], draw(st.sampled_from(near) | scalars | values))
    return node, context


def property_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


@property_settings(300)
@given(with_context(condition_trees))
def test_compiled_matches_reference(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    node, context = case
    assert validate_condition(node) == []
    condition = compile_condition(node)
    result = condition(context)
    assert result is ref_evaluate(node, context)
    assert condition.trace(context)["result"] is result


@property_settings(200)
@given(with_context(leaf_nodes()))
def test_each_leaf_matches_reference(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    node, context = case
    condition = compile_condition(node)
    trace = condition.trace(context)
    assert trace["result"] is condition(context) is ref_leaf(node, context)
    assert trace["actual"] is ref_resolve(context, node["field"])


@pytest.mark.parametrize(
    "operator", ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains"]
)
def test_every_pool_pair_matches_reference(operator: str) -> None:
    """Each pool value against each other one: the mixed-kind corners, exhaustively."""
    pool_values = [*POOL, [1, "a"], ["2026-11-21"], {"a": 1}, float("nan")]
    for value in ORDERED_POOL:
        node = leaf("x", operator, [value] if operator in ("in", "not_in") else value)
        condition = compile_condition(node)
        for actual in pool_values:
            context = {"x": actual}
            assert condition(context) is ref_leaf(node, context), (actual, operator, value)


@property_settings(300)
@given(
    scalars,
    st.sampled_from(ORDERED_POOL) | scalars,
    st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
)
def test_comparisons_match_reference(actual: Any, value: Any, operator: str) -> None:
    node = leaf("x", operator, value)
    if validate_condition(node):
        # ordering against null or a bool is rejected up front (it could never be true)
        assert operator in ("gt", "gte", "lt", "lte") and (value is None or value in (True, False))
        return
    assert evaluate(node, {"x": actual}) is ref_leaf(node, {"x": actual})


@property_settings(150)
@given(values, values)
def test_equality_is_symmetric_and_ne_is_its_negation(a: Any, b: Any) -> None:
    forward = evaluate(leaf("x", "eq", b), {"x": a})
    assert forward is evaluate(leaf("x", "eq", a), {"x": b}) is ref_equal(a, b)
    assert evaluate(leaf("x", "ne", b), {"x": a}) is not forward


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.decimals()
    | st.dates()
    | st.datetimes(timezones=st.none() | st.just(UTC)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3) | st.sampled_from(CONTEXT_KEYS), inner, max_size=3)
    ),
    max_leaves=12,
)


@property_settings(100)
@given(condition_trees, json_values)
def test_evaluation_never_raises_on_arbitrary_contexts(node: dict[str, Any], context: Any) -> None:
    condition = compile_condition(node)
    for candidate in (context, {"a": context, "n": context, "changes": context}):
        result = condition(candidate)
        assert isinstance(result, bool)
        assert condition.trace(candidate)["result"] is result


@property_settings(150)
@given(json_values)
def test_validation_never_raises_on_arbitrary_documents(node: Any) -> None:
    issues = validate_condition(node)
    assert all(isinstance(issue, ConditionIssue) and issue.path.startswith("conditions")
               for issue in issues)  # fmt: skip
    if not issues:
        assert isinstance(compile_condition(node)({}), bool)
