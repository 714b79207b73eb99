"""Task forms: the schema a workflow declares, and cleaning the data a person submits.

A form is ``{"fields": [field, ...]}``; a field::

    {"name": "risk", "type": "select", "label": "Risk appetite", "required": true,
     "choices": ["low", "medium", "high"], "help": "..."}

Types: text, textarea, number, select, multiselect, boolean, date. ``min``/``max`` bound a
number's value, a text's length, a multiselect's count, or a date (ISO ``YYYY-MM-DD``).
Choices are plain values or ``{"value", "label"}`` objects. Pure Python, no database.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from config.issues import Issue, IssueCode

FIELD_TYPES = ("text", "textarea", "number", "select", "multiselect", "boolean", "date")
FIELD_KEYS = {"name", "type", "label", "required", "choices", "min", "max", "help", "default"}
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
MAX_FIELDS = 100
MAX_TEXT = 20_000
TRUE_WORDS = {"true", "on", "1", "yes"}
FALSE_WORDS = {"false", "off", "0", "no", ""}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def choice_value(choice: Any) -> Any:
    return choice.get("value") if isinstance(choice, dict) else choice


def choice_label(choice: Any) -> str:
    if isinstance(choice, dict):
        return str(choice.get("label") or choice.get("value"))
    return str(choice)


def form_issues(form: Any, path: str = "form") -> list[Issue]:
    """Every problem of a form declaration, each with its JSON path."""
    if form is None or form == {}:
        return []
    if not isinstance(form, dict):
        return [Issue(path, IssueCode.INVALID_VALUE, 'must be an object {"fields": [...]}')]
    issues: list[Issue] = [
        Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(form) - {"fields"})
    ]
    fields = form.get("fields")
    if not isinstance(fields, list):
        return [
            *issues,
            Issue(f"{path}.fields", IssueCode.INVALID_VALUE, "must be a list of fields"),
        ]
    if len(fields) > MAX_FIELDS:
        issues.append(Issue(f"{path}.fields", IssueCode.TOO_LONG, f"at most {MAX_FIELDS} fields"))
    names: set[str] = set()
    for index, spec in enumerate(fields):
        issues += _field_issues(spec, f"{path}.fields[{index}]", names)
    return issues


def _field_issues(spec: Any, path: str, names: set[str]) -> list[Issue]:
    if not isinstance(spec, dict):
        return [Issue(path, IssueCode.INVALID_VALUE, "a field must be an object")]
    issues: list[Issue] = [
        Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(spec) - FIELD_KEYS)
    ]
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        issues.append(
            Issue(
                f"{path}.name",
                IssueCode.INVALID_VALUE,
                "must be lowercase letters, digits and '_' (max 64)",
            )
        )
    elif name in names:
        issues.append(Issue(f"{path}.name", IssueCode.DUPLICATE, f"duplicate field '{name}'"))
    else:
        names.add(name)
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        issues.append(
            Issue(
                f"{path}.type",
                IssueCode.INVALID_VALUE,
                f"unknown field type {kind!r} (known: {', '.join(FIELD_TYPES)})",
            )
        )
        return issues
    for key in ("label", "help"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            issues.append(Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, "must be a string"))
    if spec.get("required") is not None and not isinstance(spec["required"], bool):
        issues.append(Issue(f"{path}.required", IssueCode.INVALID_VALUE, "must be true or false"))
    choices = spec.get("choices")
    if kind in ("select", "multiselect"):
        if not isinstance(choices, list) or not choices:
            issues.append(
                Issue(
                    f"{path}.choices",
                    IssueCode.REQUIRED,
                    f"a {kind} field needs a non-empty list of choices",
                )
            )
        else:
            seen: set[str] = set()
            for i, choice in enumerate(choices):
                value = choice_value(choice)
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    issues.append(
                        Issue(
                            f"{path}.choices[{i}]",
                            IssueCode.INVALID_VALUE,
                            'must be a string, a number or {"value", "label"}',
                        )
                    )
                elif str(value) in seen:
                    issues.append(
                        Issue(
                            f"{path}.choices[{i}]",
                            IssueCode.DUPLICATE,
                            f"duplicate choice {value!r}",
                        )
                    )
                else:
                    seen.add(str(value))
    elif choices is not None:
        issues.append(
            Issue(f"{path}.choices", IssueCode.INVALID_VALUE, f"a {kind} field has no choices")
        )
    issues += _bounds_issues(spec, kind, path)
    return issues


def _bounds_issues(spec: dict[str, Any], kind: str, path: str) -> list[Issue]:
    issues: list[Issue] = []
    bounds = {key: spec.get(key) for key in ("min", "max") if spec.get(key) is not None}
    if not bounds:
        return issues
    if kind == "boolean" or kind == "select":
        return [
            Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, f"a {kind} field has no {key}")
            for key in bounds
        ]
    for key, value in bounds.items():
        if kind == "date":
            if not isinstance(value, str) or _parse_date(value) is None:
                issues.append(
                    Issue(
                        f"{path}.{key}", IssueCode.INVALID_VALUE, "must be an ISO date (YYYY-MM-DD)"
                    )
                )
        elif kind == "number":
            if not _is_number(value):
                issues.append(Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, "must be a number"))
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            issues.append(
                Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, "must be a non-negative integer")
            )
    if not issues and "min" in bounds and "max" in bounds:
        low, high = bounds["min"], bounds["max"]
        if kind == "date":
            low, high = _parse_date(low), _parse_date(high)
        if low > high:
            issues.append(
                Issue(f"{path}.min", IssueCode.INVALID_VALUE, "must not be greater than max")
            )
    return issues


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None


def _number(value: Any) -> int | float | None:
    if _is_number(value):
        return value
    if isinstance(value, str) and value.strip():
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        if not number.is_finite():
            return None
        return int(number) if number == number.to_integral_value() else float(number)
    return None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def form_clean(
    form: dict[str, Any] | None, data: Any, path: str = "data"
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check submitted ``data`` against the form: ``(cleaned, errors by JSON path)``.

    Every field appears in ``cleaned`` (``None``, ``[]`` or ``False`` when not given).
    """
    fields = (form or {}).get("fields") or []
    errors: dict[str, list[str]] = {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, {path: ["must be an object of field values"]}
    known = {spec["name"] for spec in fields}
    for key in sorted(set(data) - known):
        errors.setdefault(f"{path}.{key}", []).append("not a field of this form")
    cleaned: dict[str, Any] = {}
    for spec in fields:
        name = spec["name"]
        value, problem = _clean_field(spec, data.get(name))
        cleaned[name] = value
        if problem:
            errors.setdefault(f"{path}.{name}", []).append(problem)
    return cleaned, errors


def _clean_field(spec: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    kind = spec["type"]
    required = bool(spec.get("required"))
    low, high = spec.get("min"), spec.get("max")
    if kind == "boolean":
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            value = value.strip().lower() in TRUE_WORDS
        if value is None:
            value = False
        if not isinstance(value, bool):
            return None, "must be true or false"
        if required and not value:
            return value, "must be checked"
        return value, None
    if kind == "multiselect":
        if value is None or value == "":
            value = []
        if not isinstance(value, list):
            value = [value]
        allowed = {str(choice_value(c)): choice_value(c) for c in spec.get("choices") or []}
        picked = []
        for item in value:
            if isinstance(item, dict | list) or str(item) not in allowed:
                return value, f"{item!r} is not one of the choices"
            if allowed[str(item)] not in picked:
                picked.append(allowed[str(item)])
        if required and not picked:
            return picked, "this field is required"
        if low is not None and picked and len(picked) < low:
            return picked, f"choose at least {low}"
        if high is not None and len(picked) > high:
            return picked, f"choose at most {high}"
        return picked, None
    if _empty(value):
        return None, "this field is required" if required else None
    if kind in ("text", "textarea"):
        if isinstance(value, dict | list | bool):
            return None, "must be text"
        text = str(value).strip()
        if len(text) > MAX_TEXT:
            return None, f"at most {MAX_TEXT} characters"
        if low is not None and len(text) < low:
            return text, f"at least {low} characters"
        if high is not None and len(text) > high:
            return text, f"at most {high} characters"
        return text, None
    if kind == "number":
        number = _number(value)
        if number is None:
            return None, "must be a number"
        if low is not None and number < low:
            return number, f"must be at least {low}"
        if high is not None and number > high:
            return number, f"must be at most {high}"
        return number, None
    if kind == "select":
        for choice in spec.get("choices") or []:
            option = choice_value(choice)
            if not isinstance(value, dict | list | bool) and str(option) == str(value):
                return option, None
        return None, f"{value!r} is not one of the choices"
    # date
    moment = _parse_date(value) if isinstance(value, str) else None
    if moment is None:
        return None, "must be a date (YYYY-MM-DD)"
    if low is not None and moment < date.fromisoformat(low):
        return moment.isoformat(), f"must be on or after {low}"
    if high is not None and moment > date.fromisoformat(high):
        return moment.isoformat(), f"must be on or before {high}"
    return moment.isoformat(), None
