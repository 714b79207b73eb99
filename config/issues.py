"""One validation model: every rule that checks a document reports ``Issue`` values.

Workflow definitions, conditions, templates, step graphs, step configs, lifecycles, SLA
configs and task forms all report problems the same way: the JSON path at fault, a stable
UPPER_SNAKE ``code`` (each app keeps its codes in a ``StrEnum``), a human message and a
severity. Errors block a save; warnings are shown and never block::

    Issue("steps[0].config.field", "FIELD_NOT_WRITABLE", "field 'company_name' ...")

``config.errors.ValidationFailed.from_issues`` turns a list of them into the API's error
envelope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

Severity = Literal["error", "warning"]


class IssueCode(StrEnum):
    """Codes shared by every app's structural checks (JSON Schema and plain types)."""

    INVALID = "INVALID"
    REQUIRED = "REQUIRED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_VALUE = "INVALID_VALUE"
    NOT_A_CHOICE = "NOT_A_CHOICE"
    TOO_LONG = "TOO_LONG"
    TOO_SHORT = "TOO_SHORT"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    DUPLICATE = "DUPLICATE"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: where (a JSON path such as ``steps[1].config.to``), a stable code, a
    message for people, and whether it blocks (``error``) or only informs (``warning``)."""

    path: str
    code: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "code": str(self.code), "message": self.message}


def error_issues(issues: Iterable[Issue]) -> list[Issue]:
    """The issues that block."""
    return [issue for issue in issues if issue.is_error]


def warning_issues(issues: Iterable[Issue]) -> list[Issue]:
    """The issues that only inform."""
    return [issue for issue in issues if not issue.is_error]


def json_path(prefix: str, parts: Iterable[Any]) -> str:
    """``prefix`` followed by keys (``.key``) and list indexes (``[0]``)."""
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def schema_issues(validator: Any, instance: Any, path: str) -> list[Issue]:
    """Every JSON Schema error of ``instance`` as an Issue, from the error's structured
    fields (``validator``, ``validator_value``, ``absolute_path``), never its English text.

    ``required`` and ``additionalProperties`` are reported at the key concerned
    (``config.to``), the others at the value's path.
    """
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        where = json_path(path, error.absolute_path)
        for issue in _schema_error_issues(error, where):
            if (issue.path, issue.code) not in seen:
                seen.add((issue.path, issue.code))
                issues.append(issue)
    return issues


_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def _schema_error_issues(error: Any, where: str) -> list[Issue]:
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if kind == "required":
        present = instance if isinstance(instance, dict) else {}
        return [
            Issue(f"{where}.{key}", IssueCode.REQUIRED, "this key is required")
            for key in expected
            if key not in present
        ]
    if kind == "additionalProperties":
        known = set(error.schema.get("properties") or {})
        extra = sorted(set(instance) - known) if isinstance(instance, dict) else []
        return [
            Issue(f"{where}.{key}", IssueCode.UNKNOWN_KEY, f"unknown key '{key}'") for key in extra
        ]
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_JSON_TYPES.get(name, name) for name in names)
        return [Issue(where, IssueCode.INVALID_TYPE, f"must be {wanted}")]
    if kind in ("enum", "const"):
        options = expected if kind == "enum" else [expected]
        listed = ", ".join(repr(option) for option in options)
        return [Issue(where, IssueCode.NOT_A_CHOICE, f"{instance!r} is not one of: {listed}")]
    if kind in ("maxLength", "maxItems", "maxProperties"):
        return [
            Issue(where, IssueCode.TOO_LONG, f"must have at most {expected} items or characters")
        ]
    if kind in ("minLength", "minItems", "minProperties"):
        message = "must not be empty" if expected == 1 else f"must have at least {expected}"
        return [Issue(where, IssueCode.TOO_SHORT, message)]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
        return [Issue(where, IssueCode.OUT_OF_RANGE, f"must be {bound[kind]} {expected}")]
    if kind == "oneOf" and all(
        set(option) == {"required"} for option in expected if isinstance(option, dict)
    ):
        keys = [key for option in expected for key in option.get("required", [])]
        listed = " or ".join(f"'{key}'" for key in keys)
        return [Issue(where, IssueCode.REQUIRED, f"give exactly one of {listed}")]
    if kind in ("anyOf", "oneOf"):
        return [Issue(where, IssueCode.INVALID_VALUE, f"invalid value {instance!r}")]
    if kind == "pattern":
        return [Issue(where, IssueCode.INVALID_VALUE, f"must match the pattern {expected}")]
    return [Issue(where, IssueCode.INVALID_VALUE, f"invalid value ({kind})")]
