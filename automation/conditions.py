"""The condition DSL: validation, compilation and evaluation over plain dicts.

A condition is a JSON tree. A leaf compares one value of the event context::

    {"field": "lead.company_name", "operator": "contains", "value": "Tech"}

and branches combine leaves, nested freely (at most ``MAX_DEPTH`` levels)::

    {"and": [node, ...]}    true when every child is true; an empty list is true
    {"or": [node, ...]}     true when any child is true; an empty list is rejected
                            (it could never be true, so it is always a mistake)
    {"not": node}           negation

``None`` or ``{}`` as the whole condition means "no condition" (always true); inside a
tree an empty object or ``null`` is rejected.

Fields are dot paths into the context (``lead.owner.email``); a segment made of ASCII
digits indexes a list (``items.0.name``). A path that cannot be followed resolves to
``None`` (null).

Comparison rules (``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte``, and the membership
checks of ``in``, ``not_in`` and ``contains``, which use ``eq``):

- Numbers (int, float, Decimal) compare by value through Decimal; a float converts through
  its shortest repr, so ``0.1 == "0.1"``. A string that is a plain decimal literal
  (``"12"``, ``"-1.50"``, ``"2e3"``; no spaces) compares as a number when the other side
  is a number. Two strings always compare as strings, even numeric ones.
- bool is not a number: ``True`` equals only ``True``; bools are never ordered.
- Dates and datetimes (objects, or ISO strings such as ``"2026-11-21"``,
  ``"2026-11-21T10:00:00Z"``, ``"2026-11-21 10:00:00+02:00"``: ``YYYY-MM-DD`` alone, or
  followed by ``T`` or a space and a time ``datetime.fromisoformat`` accepts) compare by
  value when both sides are temporal. A naive datetime counts as UTC; a date against a
  datetime compares the date with the datetime's own calendar date.
- Other strings compare as strings (code point order).
- ``null`` equals only ``null``; lists and objects are equal when their items are equal
  under these rules. NaN equals nothing.
- An ordering comparison with ``null``, a bool, a list, an object, NaN or two values of
  incompatible kinds (a number and a non-numeric string, a date and a number) is false.
- ``ne`` is exactly ``not eq``; ``not_in`` is exactly ``not in`` (so both are true for a
  missing field unless ``null`` is the value or in the list).
- ``in``/``not_in``: the value is a list; the field's whole value must equal an element.
- ``contains``: substring of a string, or an element (``eq``) of a list; otherwise false.
- ``startswith``/``endswith``: strings only; otherwise false.
- ``exists``: the field resolves to a non-null value; ``"value": false`` inverts it.
- ``changed``: the field is in the context's ``changes`` mapping
  (``{"stage": {"old": ..., "new": ...}}``); ``deal.stage`` also matches the key
  ``stage`` when ``deal.stage`` itself is not a key. An entry whose ``old`` and ``new`` are
  equal does not count. ``changed`` takes no value.

Evaluation never raises: a value the rules cannot handle makes its leaf false.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from config.issues import Issue

__all__ = [
    "MAX_DEPTH",
    "OPERATORS",
    "CompiledCondition",
    "ConditionInvalid",
    "ConditionIssue",
    "ConditionIssueCode",
    "compile_cache_clear",
    "compile_cached",
    "compile_condition",
    "evaluate",
    "resolve_path",
    "validate_condition",
]

OPERATORS: tuple[str, ...] = (
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in",
    "contains", "startswith", "endswith", "exists", "changed",
)  # fmt: skip
MAX_DEPTH = 32
ROOT_PATH = "conditions"
COMPILE_CACHE_SIZE = 4096

_ORDERING = frozenset({"gt", "gte", "lt", "lte"})
_STRING_ONLY = frozenset({"startswith", "endswith"})
_LOGICAL_KEYS = ("and", "or", "not")
_LEAF_KEYS = ("field", "operator", "value")
_ALIASES = {
    "=": "eq", "==": "eq", "equals": "eq", "equal": "eq", "is": "eq",
    "!=": "ne", "<>": "ne", "not_equals": "ne", "neq": "ne",
    ">": "gt", ">=": "gte", "ge": "gte", "<": "lt", "<=": "lte", "le": "lte",
    "nin": "not_in", "not in": "not_in", "notin": "not_in", "has": "contains",
    "starts_with": "startswith", "ends_with": "endswith", "exist": "exists",
}  # fmt: skip
_MAX_FIELD_LENGTH = 255
_SEGMENT = re.compile(r"[^\s.\[\]]+")
_INDEX = re.compile(r"[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]")

_Predicate = Callable[[Any], bool]
_Tracer = Callable[[Any], dict[str, Any]]


class ConditionIssueCode(StrEnum):
    """Stable machine-readable codes of validation issues (callers branch on these)."""

    INVALID_NODE = "INVALID_NODE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    MISSING_KEY = "MISSING_KEY"
    INVALID_FIELD = "INVALID_FIELD"
    UNKNOWN_OPERATOR = "UNKNOWN_OPERATOR"
    INVALID_VALUE = "INVALID_VALUE"
    TOO_DEEP = "TOO_DEEP"


# One problem in a condition: the JSON path it is at, a stable code and a message.
ConditionIssue = Issue


_Code = ConditionIssueCode


class ConditionInvalid(Exception):
    """Raised by :func:`compile_condition` for an invalid condition; holds every issue."""

    code = "invalid_condition"

    def __init__(self, issues: list[ConditionIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(issue) for issue in self.issues))


# --------------------------------------------------------------------------- validation


def validate_condition(node: Any, path: str = ROOT_PATH) -> list[ConditionIssue]:
    """Return every issue of a condition tree (an empty list when it is valid).

    Each issue names the JSON path of the offending node or key, e.g.
    ``Issue("conditions.and[1].operator", "UNKNOWN_OPERATOR", "unknown operator 'equals'
    (did you mean 'eq'?)")``. ``None`` and ``{}`` are valid (no condition).
    """
    if node is None or (isinstance(node, Mapping) and not node):
        return []
    issues: list[ConditionIssue] = []
    _validate_node(node, path, 0, issues)
    return issues


def _issue(issues: list[ConditionIssue], path: str, message: str, code: str) -> None:
    issues.append(ConditionIssue(path=path, message=message, code=code))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, date):
        return "date"
    return type(value).__name__


def _suggest(word: str, choices: tuple[str, ...], aliases: Mapping[str, str]) -> str:
    """A " (did you mean 'x'?)" hint for a misspelt name, or an empty string."""
    match = aliases.get(word.lower())
    if match is None:
        lowered = word.lower()
        match = lowered if lowered in choices else None
    if match is None:
        close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
        match = close[0] if close else None
    return f" (did you mean {match!r}?)" if match else ""


def _validate_node(node: Any, path: str, depth: int, issues: list[ConditionIssue]) -> None:
    if depth > MAX_DEPTH:
        _issue(issues, path, f"conditions nested deeper than {MAX_DEPTH} levels", _Code.TOO_DEEP)
        return
    if not isinstance(node, Mapping):
        _issue(
            issues, path, f"condition must be an object, not {_json_type(node)}", _Code.INVALID_NODE
        )
        return
    if not node:
        _issue(issues, path, "empty condition object", _Code.INVALID_NODE)
        return
    logical = [key for key in _LOGICAL_KEYS if key in node]
    leaf = [key for key in _LEAF_KEYS if key in node]
    allowed = _LOGICAL_KEYS if logical else _LEAF_KEYS if leaf else _LOGICAL_KEYS + _LEAF_KEYS
    for key in node:
        if key not in _LOGICAL_KEYS and key not in _LEAF_KEYS:
            hint = _suggest(key, allowed, {}) if isinstance(key, str) else ""
            _issue(issues, f"{path}.{key}", f"unknown key {key!r}{hint}", _Code.UNKNOWN_KEY)
    if len(logical) + bool(leaf) > 1:
        first, second = (leaf[:1] + logical)[:2]
        _issue(
            issues,
            path,
            f"node has both {first!r} and {second!r}; a node is either a "
            "leaf ('field', 'operator', 'value') or one of 'and', 'or', 'not'",
            _Code.INVALID_NODE,
        )
        return
    if not logical:
        _validate_leaf(node, path, issues)
        return
    key = logical[0]
    child = node[key]
    if key == "not":
        if not isinstance(child, Mapping):
            _issue(
                issues,
                f"{path}.not",
                f"'not' needs a condition object, not {_json_type(child)}",
                _Code.INVALID_NODE,
            )
            return
        _validate_node(child, f"{path}.not", depth + 1, issues)
        return
    if not isinstance(child, list | tuple):
        _issue(
            issues,
            f"{path}.{key}",
            f"{key!r} needs a list of conditions, not {_json_type(child)}",
            _Code.INVALID_NODE,
        )
        return
    if key == "or" and not child:
        _issue(
            issues,
            f"{path}.or",
            "'or' needs at least one condition (an empty 'or' is never true)",
            _Code.INVALID_NODE,
        )
        return
    for index, item in enumerate(child):
        _validate_node(item, f"{path}.{key}[{index}]", depth + 1, issues)


def _validate_leaf(node: Mapping[str, Any], path: str, issues: list[ConditionIssue]) -> None:
    if "field" not in node:
        _issue(issues, f"{path}.field", "key 'field' is required", _Code.MISSING_KEY)
    else:
        field = node["field"]
        if not isinstance(field, str):
            _issue(
                issues,
                f"{path}.field",
                f"field must be a non-empty string, not {_json_type(field)}",
                _Code.INVALID_FIELD,
            )
        elif not field:
            _issue(issues, f"{path}.field", "field must be a non-empty string", _Code.INVALID_FIELD)
        elif _split_path(field) is None:
            _issue(
                issues,
                f"{path}.field",
                f"malformed field path {field!r}: use names "
                "separated by single dots, without spaces or brackets (e.g. "
                "'items.0.name')",
                _Code.INVALID_FIELD,
            )
    if "operator" not in node:
        _issue(issues, f"{path}.operator", "key 'operator' is required", _Code.MISSING_KEY)
        return
    operator = node["operator"]
    if not isinstance(operator, str):
        _issue(
            issues,
            f"{path}.operator",
            f"operator must be a string, not {_json_type(operator)}",
            _Code.UNKNOWN_OPERATOR,
        )
        return
    if operator not in OPERATORS:
        _issue(
            issues,
            f"{path}.operator",
            f"unknown operator {operator!r}{_suggest(operator, OPERATORS, _ALIASES)}",
            _Code.UNKNOWN_OPERATOR,
        )
        return
    _validate_value(operator, node, f"{path}.value", issues)


def _validate_value(
    operator: str, node: Mapping[str, Any], path: str, issues: list[ConditionIssue]
) -> None:
    has_value = "value" in node
    value = node.get("value")
    kind = _json_type(value)
    if operator == "changed":
        if has_value:
            _issue(issues, path, "operator 'changed' takes no value", _Code.INVALID_VALUE)
    elif operator == "exists":
        if has_value and not isinstance(value, bool):
            _issue(
                issues,
                path,
                f"operator 'exists' needs a boolean value, not {kind}",
                _Code.INVALID_VALUE,
            )
    elif operator in ("in", "not_in"):
        if not has_value or not isinstance(value, list | tuple):
            _issue(
                issues,
                path,
                f"operator {operator!r} needs a list value",
                _Code.INVALID_VALUE if has_value else _Code.MISSING_KEY,
            )
        elif _nested_too_deep(value, MAX_DEPTH):
            _issue(issues, path, f"value nested deeper than {MAX_DEPTH} levels", _Code.TOO_DEEP)
    elif not has_value:
        _issue(issues, path, f"operator {operator!r} needs a value", _Code.MISSING_KEY)
    elif operator in _ORDERING and kind not in ("number", "string", "date"):
        _issue(
            issues,
            path,
            f"operator {operator!r} needs a number, string or date value, not {kind}",
            _Code.INVALID_VALUE,
        )
    elif operator in _STRING_ONLY and kind != "string":
        _issue(
            issues,
            path,
            f"operator {operator!r} needs a string value, not {kind}",
            _Code.INVALID_VALUE,
        )
    elif _nested_too_deep(value, MAX_DEPTH):
        _issue(issues, path, f"value nested deeper than {MAX_DEPTH} levels", _Code.TOO_DEEP)


def _nested_too_deep(value: Any, remaining: int) -> bool:
    if isinstance(value, list | tuple):
        items: Any = value
    elif isinstance(value, Mapping):
        items = value.values()
    else:
        return False
    return remaining == 0 or any(_nested_too_deep(item, remaining - 1) for item in items)


# --------------------------------------------------------------------------- paths


def _split_path(path: str) -> tuple[tuple[str, int | None], ...] | None:
    """Split a dot path into (key, list index or None) pairs; None when malformed."""
    if len(path) > _MAX_FIELD_LENGTH:
        return None
    segments = path.split(".")
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        return None
    return tuple(
        (segment, int(segment) if _INDEX.fullmatch(segment) else None) for segment in segments
    )


def _walk(context: Any, segments: tuple[tuple[str, int | None], ...]) -> Any:
    current = context
    for key, index in segments:
        if isinstance(current, Mapping):
            current = current.get(key)
        elif index is not None and isinstance(current, list | tuple):
            current = current[index] if index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def resolve_path(context: Any, path: str) -> Any:
    """Return the value at a dot path (``lead.owner.email``, ``items.0.name``) or None.

    Mappings are looked up by key, lists by an all-digit segment; anything that cannot be
    followed (a missing key, an index out of range, a malformed path) gives None.
    """
    segments = _split_path(path) if isinstance(path, str) else None
    if segments is None:
        return None
    try:
        return _walk(context, segments)
    except Exception:
        return None


# --------------------------------------------------------------------------- values


def _exact_number(value: Any) -> Decimal | None:
    """A number type (not bool, not NaN) as a Decimal, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return None if value != value else Decimal(repr(value))
    if isinstance(value, Decimal):
        return None if value.is_nan() else value
    return None


def _text_number(value: Any) -> Decimal | None:
    """A plain decimal literal string as a Decimal, else None."""
    if not isinstance(value, str) or not _NUMBER_TEXT.fullmatch(value):
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, ValueError):
        return None


def _temporal(value: Any) -> date | None:
    """A date, or an aware datetime (naive counts as UTC), from an object or ISO string."""
    if isinstance(value, str):
        try:
            if _DATE_TEXT.fullmatch(value):
                return date.fromisoformat(value)
            if not _DATETIME_PREFIX.match(value):
                return None
            value = datetime.fromisoformat(value)
        except (ValueError, OverflowError):
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    return None


def _align(left: date, right: date) -> tuple[date, date]:
    """Two temporal values made comparable: a datetime meets a date as its calendar date."""
    if isinstance(left, datetime) and not isinstance(right, datetime):
        return left.date(), right
    if isinstance(right, datetime) and not isinstance(left, datetime):
        return left, right.date()
    return left, right


@dataclass(frozen=True, slots=True, eq=False)
class _Operand:
    """A condition value with its coercions worked out once, at compile time."""

    raw: Any
    number: Decimal | None
    text_number: Decimal | None
    temporal: date | None
    items: tuple[_Operand, ...] | None
    entries: dict[Any, _Operand] | None

    @classmethod
    def of(cls, value: Any) -> _Operand:
        items = entries = None
        if isinstance(value, list | tuple):
            items = tuple(cls.of(item) for item in value)
        elif isinstance(value, Mapping):
            entries = {key: cls.of(item) for key, item in value.items()}
        number = _exact_number(value)
        text_number = _text_number(value)
        return cls(value, number, text_number, _temporal(value), items, entries)


def _pair(actual: Any, expected: _Operand) -> tuple[Any, Any] | None:
    """Both sides in one comparable form, or None when their kinds do not mix."""
    if expected.number is not None:
        number = _exact_number(actual)
        if number is None:
            number = _text_number(actual)
        return None if number is None else (number, expected.number)
    if expected.text_number is not None:
        number = _exact_number(actual)
        if number is not None:
            return number, expected.text_number
        return (actual, expected.raw) if isinstance(actual, str) else None
    if expected.temporal is not None:
        moment = _temporal(actual)
        if moment is not None:
            return _align(moment, expected.temporal)
    if isinstance(actual, str) and isinstance(expected.raw, str):
        return actual, expected.raw
    return None


def _equals(actual: Any, expected: _Operand) -> bool:
    raw = expected.raw
    if actual is None or raw is None:
        return actual is None and raw is None
    if isinstance(actual, bool) or isinstance(raw, bool):
        return isinstance(actual, bool) and isinstance(raw, bool) and actual == raw
    pair = _pair(actual, expected)
    if pair is not None:
        return bool(pair[0] == pair[1])
    if expected.items is not None:
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected.items)
            and all(_equals(a, e) for a, e in zip(actual, expected.items, strict=True))
        )
    if expected.entries is not None:
        return (
            isinstance(actual, Mapping)
            and len(actual) == len(expected.entries)
            and all(
                key in actual and _equals(actual[key], e) for key, e in expected.entries.items()
            )
        )
    return False


def _order(actual: Any, expected: _Operand) -> int | None:
    """-1, 0 or 1 comparing actual with expected; None when they cannot be ordered."""
    if actual is None or isinstance(actual, bool) or isinstance(expected.raw, bool):
        return None
    pair = _pair(actual, expected)
    if pair is None:
        return None
    left, right = pair
    return -1 if left < right else 1 if left > right else 0


# --------------------------------------------------------------------------- compilation


def _value_test(operator: str, value: Any) -> _Predicate:
    """The test of one non-``changed`` operator against a resolved value."""
    if operator in ("in", "not_in"):
        options = tuple(_Operand.of(item) for item in value)
        negate = operator == "not_in"
        return lambda actual: negate != any(_equals(actual, option) for option in options)
    if operator == "exists":
        wanted = value is not False
        return lambda actual: (actual is not None) == wanted
    if operator in _STRING_ONLY:
        method = str.startswith if operator == "startswith" else str.endswith
        return lambda actual: isinstance(actual, str) and method(actual, value)
    expected = _Operand.of(value)
    if operator == "eq":
        return lambda actual: _equals(actual, expected)
    if operator == "ne":
        return lambda actual: not _equals(actual, expected)
    if operator == "contains":
        return lambda actual: (
            (isinstance(actual, str) and isinstance(value, str) and value in actual)
            or (
                isinstance(actual, list | tuple) and any(_equals(item, expected) for item in actual)
            )
        )
    accepted = {"gt": (1,), "gte": (0, 1), "lt": (-1,), "lte": (-1, 0)}[operator]
    return lambda actual: _order(actual, expected) in accepted


def _changed_entry(context: Any, keys: tuple[str, ...]) -> tuple[bool, Any]:
    """Whether a field changed in this update, and its ``changes`` entry."""
    changes = context.get("changes") if isinstance(context, Mapping) else None
    if not isinstance(changes, Mapping):
        return False, None
    for key in keys:
        if key in changes:
            entry = changes[key]
            if isinstance(entry, Mapping) and "old" in entry and "new" in entry:
                return not _equals(entry["old"], _Operand.of(entry["new"])), entry
            return True, entry
    return False, None


def _compile_leaf(node: Mapping[str, Any], path: str) -> tuple[_Predicate, _Tracer]:
    field: str = node["field"]
    operator: str = node["operator"]
    segments = _split_path(field) or ()
    value = node.get("value", True if operator == "exists" else None)

    if operator == "changed":
        keys = (field,) if "." not in field else (field, field.split(".", 1)[1])

        def actual_of(context: Any) -> Any:
            try:
                return _walk(context, segments)
            except Exception:
                return None

        def predicate(context: Any) -> bool:
            try:
                return _changed_entry(context, keys)[0]
            except Exception:
                return False

        def tracer(context: Any) -> dict[str, Any]:
            try:
                changed, entry = _changed_entry(context, keys)
            except Exception:
                changed, entry = False, None
            return {
                "path": path,
                "result": changed,
                "field": field,
                "operator": operator,
                "expected": None,
                "actual": actual_of(context),
                "change": entry,
            }

        return predicate, tracer

    test = _value_test(operator, value)

    def leaf_predicate(context: Any) -> bool:
        try:
            return bool(test(_walk(context, segments)))
        except Exception:
            return False

    def leaf_tracer(context: Any) -> dict[str, Any]:
        actual = None
        try:
            actual = _walk(context, segments)
            result = bool(test(actual))
        except Exception:
            result = False
        return {
            "path": path,
            "result": result,
            "field": field,
            "operator": operator,
            "expected": value,
            "actual": actual,
        }

    return leaf_predicate, leaf_tracer


def _compile_node(node: Mapping[str, Any], path: str) -> tuple[_Predicate, _Tracer]:
    if "not" in node:
        inner, inner_trace = _compile_node(node["not"], f"{path}.not")

        def negation_tracer(context: Any) -> dict[str, Any]:
            child = inner_trace(context)
            return {"path": path, "op": "not", "result": not child["result"], "children": [child]}

        return (lambda context: not inner(context)), negation_tracer
    for key in ("and", "or"):
        if key in node:
            compiled = [
                _compile_node(child, f"{path}.{key}[{index}]")
                for index, child in enumerate(node[key])
            ]
            predicates = tuple(predicate for predicate, _ in compiled)
            tracers = tuple(tracer for _, tracer in compiled)
            return _combine(key, predicates, tracers, path)
    return _compile_leaf(node, path)


def _combine(
    op: str, predicates: tuple[_Predicate, ...], tracers: tuple[_Tracer, ...], path: str
) -> tuple[_Predicate, _Tracer]:
    is_and = op == "and"

    def predicate(context: Any) -> bool:
        for child in predicates:
            if child(context) != is_and:
                return not is_and
        return is_and

    def tracer(context: Any) -> dict[str, Any]:
        children = [trace(context) for trace in tracers]
        results = [child["result"] for child in children]
        result = all(results) if is_and else any(results)
        return {"path": path, "op": op, "result": result, "children": children}

    return predicate, tracer


class CompiledCondition:
    """A validated condition turned into closures; call it with a context to evaluate.

    ``condition(context)`` short-circuits; ``condition.trace(context)`` evaluates every
    node and returns the tree the simulator shows: leaves as ``{"path", "result", "field",
    "operator", "expected", "actual"}`` (``changed`` leaves add ``"change"``, the entry
    of ``changes``), branches as ``{"path", "op", "result", "children"}``, and an empty
    condition as ``{"path", "op": "always", "result": True, "children": []}``.
    """

    __slots__ = ("_predicate", "_tracer", "node", "path")

    def __init__(self, node: Mapping[str, Any] | None, path: str = ROOT_PATH) -> None:
        """Compile ``node``, which must already be valid (use :func:`compile_condition`)."""
        self.node = node
        self.path = path
        if not node:
            self._predicate: _Predicate = lambda context: True
            self._tracer: _Tracer = lambda context: {
                "path": path,
                "op": "always",
                "result": True,
                "children": [],
            }
        else:
            self._predicate, self._tracer = _compile_node(node, path)

    def __call__(self, context: Any) -> bool:
        return self._predicate(context)

    def trace(self, context: Any) -> dict[str, Any]:
        """Evaluate every node (no short-circuit) and return the result tree."""
        return self._tracer(context)

    def __repr__(self) -> str:
        return f"CompiledCondition({self.node!r})"


def compile_condition(node: Any, path: str = ROOT_PATH) -> CompiledCondition:
    """Validate and compile a condition; raise :class:`ConditionInvalid` when invalid."""
    issues = validate_condition(node, path)
    if issues:
        raise ConditionInvalid(issues)
    return CompiledCondition(node, path)


def evaluate(node: Any, context: Any) -> bool:
    """Compile ``node`` and evaluate it against ``context`` (for one-off checks)."""
    return compile_condition(node)(context)


_cache: OrderedDict[Hashable, CompiledCondition] = OrderedDict()
_cache_lock = threading.Lock()


def compile_cached(key: Hashable, node: Any) -> CompiledCondition:
    """Compile ``node`` once per ``key`` (least recently used of 4096 entries dropped).

    The key must identify the condition's content for good, e.g. ``(version_id,
    trigger_index)``: definition versions are immutable, so a key never needs
    invalidating. Invalid conditions raise :class:`ConditionInvalid` and are not cached.
    """
    with _cache_lock:
        compiled = _cache.get(key)
        if compiled is not None:
            _cache.move_to_end(key)
            return compiled
    compiled = compile_condition(node)
    with _cache_lock:
        _cache[key] = compiled
        _cache.move_to_end(key)
        while len(_cache) > COMPILE_CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def compile_cache_clear() -> None:
    """Forget every cached compiled condition."""
    with _cache_lock:
        _cache.clear()
