"""Validation that knows the domain: what a workflow's events carry, read from the event
catalogue (``automation.catalogue``), checked against its triggers, conditions and
templates.

- a trigger's event type must be one the engine raises or accepts (registered, declared,
  scheduled): ``UNKNOWN_EVENT_TYPE``; a pattern such as ``deal.*`` must match one;
- a condition's field must exist in the context of the events that reach it
  (``UNKNOWN_PATH``), its operator must apply to the field's type
  (``OPERATOR_NOT_APPLICABLE``: ``contains`` on a number, ``gte`` on a boolean), its value
  must be of the field's type (``VALUE_TYPE_MISMATCH``) and among its choices
  (``NOT_A_CHOICE``);
- a template's variables must exist in that context (``UNKNOWN_VARIABLE``), and
  ``{{steps.X...}}`` (in templates and conditions) must name a step (``UNKNOWN_STEP``) that
  runs before, by the ``after`` graph (``STEP_NOT_UPSTREAM``).

A workflow's steps see the events of all its triggers: a path found in some of them but
not all is a warning (``PATH_NOT_IN_EVERY_EVENT``), never an error. When the events'
contexts cannot be known (no trigger, a free-form payload), paths are not checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from automation import graph
from automation.catalogue import ContextField, EventEntry, matching_entries
from automation.conditions import OPERATORS
from automation.templating import template_paths
from config.issues import Issue, IssueCode
from workflows.errors import DefinitionCode

# Roots every run's context has besides its event's: they are not the event's to check.
RUN_ROOTS = frozenset({"run", "workflow"})
PATH_NOT_IN_EVERY_EVENT = "PATH_NOT_IN_EVERY_EVENT"
_VALUE_OPERATORS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"})
_CHOICE_OPERATORS = frozenset({"eq", "ne", "in", "not_in"})


@dataclass(frozen=True)
class EventShape:
    """The contexts a condition or template may meet: those of the catalogue entries its
    triggers match."""

    entries: tuple[EventEntry, ...]

    def has_path(self, path: str) -> bool:
        return any(entry.has_path(path) for entry in self.entries)

    def in_every(self, path: str) -> bool:
        return all(entry.has_path(path) for entry in self.entries)

    def lookup(self, path: str) -> ContextField | None:
        for entry in self.entries:
            found = entry.lookup(path)
            if found is not None:
                return found
        return None


def shape_of(event_types: list[str], entries: list[EventEntry]) -> EventShape | None:
    """The shape of the events these trigger event types meet; None when unknown."""
    matched: dict[str, EventEntry] = {}
    for event_type in event_types:
        found = matching_entries(event_type, entries)
        if not found:
            return None  # reported as an unknown event type
        matched.update({entry.type: entry for entry in found})
    return EventShape(tuple(matched.values())) if matched else None


def event_type_issues(event_type: str, path: str, entries: list[EventEntry]) -> list[Issue]:
    if matching_entries(event_type, entries):
        return []
    known = sorted(entry.type for entry in entries if "*" not in entry.type)
    if event_type.endswith("*"):
        message = f"the pattern {event_type!r} matches no known event type"
    else:
        close = difflib.get_close_matches(event_type, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        message = (
            f"unknown event type {event_type!r}{hint}: neither a registered model's event "
            "nor a declared one (declare it with automation.catalogue.declare_event)"
        )
    return [Issue(path, DefinitionCode.UNKNOWN_EVENT_TYPE, message)]


def upstream_steps(steps: list[Any]) -> dict[str, frozenset[str]] | None:
    """Each step key's ancestors by the ``after`` graph; None when the graph is invalid."""
    if graph.validate_graph(steps):
        return None
    deps = graph.dependencies(steps)
    found: dict[str, frozenset[str]] = {}
    for key in graph.topological_order(deps):
        found[key] = frozenset(
            {*deps[key], *(ancestor for parent in deps[key] for ancestor in found[parent])}
        )
    return found


def _step_reference(
    segments: list[str],
    path: str,
    step_keys: set[Any],
    upstream: frozenset[str] | None,
    where: str,
) -> list[Issue]:
    if len(segments) < 2:
        return []
    key = segments[1]
    if key not in step_keys:
        return [Issue(path, DefinitionCode.UNKNOWN_STEP, f"unknown step '{key}' in {where}")]
    if upstream is not None and key not in upstream:
        return [
            Issue(
                path,
                DefinitionCode.STEP_NOT_UPSTREAM,
                f"step '{key}' does not run before this one (add it to 'after', directly "
                "or through a step that waits for it)",
            )
        ]
    return []


def _path_issues(dotted: str, path: str, shape: EventShape, code: str, what: str) -> list[Issue]:
    if not shape.has_path(dotted):
        root = dotted.split(".")[0]
        name = root if not shape.has_path(root) else dotted
        return [
            Issue(path, code, f"unknown {what} '{name}': the event's context has no '{dotted}'")
        ]
    if not shape.in_every(dotted):
        missing = [e.type for e in shape.entries if not e.has_path(dotted)]
        return [
            Issue(
                path,
                PATH_NOT_IN_EVERY_EVENT,
                f"'{dotted}' is not in the context of {', '.join(missing[:5])}",
                severity="warning",
            )
        ]
    return []


def template_issues(
    config: object,
    path: str,
    shape: EventShape | None,
    step_keys: set[Any],
    upstream: frozenset[str] | None,
) -> list[Issue]:
    """The variables of every template in a step's config, checked against the context."""
    issues: list[Issue] = []
    for where, text in _strings(config, path):
        for segments in template_paths(text):
            root = segments[0]
            if root == "steps":
                issues += _step_reference(list(segments), where, step_keys, upstream, "template")
            elif root in RUN_ROOTS or shape is None:
                continue
            else:
                issues += _path_issues(
                    ".".join(segments), where, shape, DefinitionCode.UNKNOWN_VARIABLE, "variable"
                )
    return issues


def condition_issues(
    node: object,
    path: str,
    shape: EventShape | None,
    step_keys: set[Any],
    upstream: frozenset[str] | None,
) -> list[Issue]:
    """Every leaf of a (structurally valid) condition, checked against the context."""
    issues: list[Issue] = []
    for leaf, where in _leaves(node, path):
        field, operator = leaf.get("field"), leaf.get("operator")
        if not isinstance(field, str) or not field or operator not in OPERATORS:
            continue
        segments = field.split(".")
        if segments[0] == "steps":
            issues += _step_reference(segments, f"{where}.field", step_keys, upstream, "condition")
            continue
        if segments[0] in RUN_ROOTS or shape is None:
            continue
        found = _path_issues(field, f"{where}.field", shape, DefinitionCode.UNKNOWN_PATH, "field")
        issues += found
        if any(issue.is_error for issue in found):
            continue
        spec = shape.lookup(field)
        if spec is None:
            continue
        if not spec.allows(operator):
            issues.append(
                Issue(
                    f"{where}.operator",
                    DefinitionCode.OPERATOR_NOT_APPLICABLE,
                    f"operator {operator!r} does not apply to '{field}' ({spec.type})",
                )
            )
            continue
        if operator in _VALUE_OPERATORS and "value" in leaf:
            issues += _value_issues(spec, operator, leaf["value"], f"{where}.value")
    return issues


def _value_issues(spec: ContextField, operator: str, value: object, path: str) -> list[Issue]:
    if operator in ("in", "not_in"):
        if not isinstance(value, list):
            return []
        items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        items = [(path, value)]
    issues: list[Issue] = []
    for where, item in items:
        if item is None:
            continue
        problem = _type_problem(spec.type, item)
        if problem:
            issues.append(
                Issue(
                    where,
                    DefinitionCode.VALUE_TYPE_MISMATCH,
                    f"'{spec.path}' is {problem}, not {item!r}",
                )
            )
        elif (
            spec.choices is not None and operator in _CHOICE_OPERATORS and item not in spec.choices
        ):
            listed = ", ".join(repr(choice) for choice in spec.choices)
            issues.append(
                Issue(
                    where,
                    IssueCode.NOT_A_CHOICE,
                    f"{item!r} is not a value of '{spec.path}' (one of: {listed})",
                )
            )
    return issues


def _type_problem(kind: str, value: object) -> str | None:
    """What a value should have been for a field of ``kind``, or None when it fits."""
    if kind in ("integer", "number"):
        if isinstance(value, bool):
            return "a number"
        if isinstance(value, int | float):
            return None
        if isinstance(value, str):
            try:
                Decimal(value)
            except InvalidOperation:
                return "a number"
            return None
        return "a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "true or false"
    if kind in ("date", "datetime"):
        if not isinstance(value, str):
            return "an ISO date or datetime"
        try:
            (date.fromisoformat if len(value) == 10 else datetime.fromisoformat)(value)
        except ValueError:
            return "an ISO date or datetime"
    return None


def _leaves(node: object, path: str) -> list[tuple[Mapping[str, Any], str]]:
    if not isinstance(node, Mapping) or not node:
        return []
    if "not" in node:
        return _leaves(node["not"], f"{path}.not")
    for key in ("and", "or"):
        if key in node:
            children = node[key] if isinstance(node[key], list) else []
            return [
                leaf
                for index, child in enumerate(children)
                for leaf in _leaves(child, f"{path}.{key}[{index}]")
            ]
    return [(node, path)]


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}[{i}]")]
    return []
