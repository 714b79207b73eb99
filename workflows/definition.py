"""The workflow document: its canonical form and its validation.

The same JSON document is used by the API, the ``export_workflows``/``import_workflows``
commands, the admin's raw view and the version snapshots::

    {"slug", "name", "description", "is_active",
     "triggers": [{"event_type", "conditions", "priority", "is_active"}],
     "steps": [{"key", "type", "config", "conditions", "after", "allow_failure",
                "retry", "timeout_seconds"}]}

Validation reports ``(json_path, message)`` pairs, e.g.
``("triggers[0].conditions.and[1].operator", "unknown operator 'equals'")``.
A ``{{secrets.NAME}}`` outside the fields a step type sends outward is refused with a
message starting ``secret_not_allowed:`` (the policy is in ``automation.secrets``).
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from automation import graph
from automation.actions import get_step_type, step_types
from automation.conditions import validate_condition
from automation.registry import registrations
from automation.secrets import secret_policy_issues
from automation.templating import BUILTIN_ROOTS, validate_value

Issue = tuple[str, str]

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
EVENT_TYPE = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")
TRIGGER_KEYS = {"key", "event_type", "conditions", "priority", "is_active"}
STEP_KEYS = {
    "key",
    "type",
    "config",
    "conditions",
    "after",
    "allow_failure",
    "retry",
    "timeout_seconds",
}
RETRY_KEYS = {"max_attempts", "backoff_seconds", "max_backoff_seconds"}
TOP_KEYS = {"slug", "name", "description", "is_active", "triggers", "steps"}
MAX_STEPS = 200
MAX_TRIGGERS = 50


def normalise(document: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and key order fixed, so equal definitions compare equal."""
    return {
        "slug": document.get("slug"),
        "name": document.get("name"),
        "description": document.get("description") or "",
        "is_active": bool(document.get("is_active", True)),
        "triggers": [
            {
                "key": t.get("key") or None,
                "event_type": t.get("event_type"),
                "conditions": t.get("conditions") or None,
                "priority": int(t.get("priority") or 0),
                "is_active": bool(t.get("is_active", True)),
            }
            for t in document.get("triggers") or []
        ],
        "steps": [
            {
                "key": s.get("key"),
                "type": s.get("type"),
                "config": s.get("config") or {},
                "conditions": s.get("conditions") or None,
                "after": s.get("after"),
                "allow_failure": bool(s.get("allow_failure", False)),
                "retry": s.get("retry") or None,
                "timeout_seconds": s.get("timeout_seconds"),
            }
            for s in document.get("steps") or []
        ],
    }


def template_roots(document: dict[str, Any]) -> set[str] | None:
    """Variables templates may start with, or None when they cannot be known.

    When every trigger is a model event of a registered model, the roots are the model's
    name and fields plus the built-ins; a custom event's payload is free-form, so then any
    root is accepted.
    """
    by_name = {r.name: r for r in registrations()}
    roots = set(BUILTIN_ROOTS) | {"entity_type"}
    triggers = document.get("triggers") or []
    if not triggers or not isinstance(triggers, list):
        return None
    for trigger in triggers:
        if not isinstance(trigger, dict):
            return None
        event_type = str(trigger.get("event_type") or "")
        name, _, action = event_type.partition(".")
        registration = by_name.get(name)
        model_actions = {"created", "updated", "deleted", "*"} | {
            f"{field}_changed" for field in (registration.track if registration else ())
        }
        if registration is None or action not in model_actions:
            return None
        roots.add(name)
        for field in registration.model._meta.concrete_fields:
            roots.update({field.name, field.attname})
        for field in registration.track:
            roots.update({f"old_{field}", f"new_{field}"})
    return roots


def _type_issues(
    value: Any, path: str, expected: type | tuple[type, ...], label: str
) -> list[Issue]:
    if value is None:
        return []
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        return [(path, f"must be {label}")]
    return []


def validate_definition(document: Any) -> list[Issue]:
    """Every problem of a workflow document, each with the JSON path it is at."""
    if not isinstance(document, dict):
        return [("", "a workflow definition must be a JSON object")]
    issues: list[Issue] = []
    for key in sorted(set(document) - TOP_KEYS - {"id", "version"}):
        issues.append((key, f"unknown key '{key}'"))
    slug = document.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        issues.append(("slug", "must be lowercase letters, digits, '-' or '_' (max 100)"))
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        issues.append(("name", "must be a non-empty string of at most 200 characters"))
    issues += _type_issues(document.get("description"), "description", str, "a string")
    issues += _type_issues(document.get("is_active"), "is_active", bool, "true or false")

    triggers = document.get("triggers", [])
    if not isinstance(triggers, list):
        issues.append(("triggers", "must be a list"))
        triggers = []
    elif len(triggers) > MAX_TRIGGERS:
        issues.append(("triggers", f"at most {MAX_TRIGGERS} triggers"))
    for index, trigger in enumerate(triggers):
        issues += validate_trigger(trigger, f"triggers[{index}]")

    steps = document.get("steps", [])
    if not isinstance(steps, list):
        issues.append(("steps", "must be a list"))
        return issues
    if len(steps) > MAX_STEPS:
        issues.append(("steps", f"at most {MAX_STEPS} steps"))
    graph_issues = graph.validate_graph(steps, path="steps")
    issues += [(issue.path, issue.message) for issue in graph_issues]
    roots = template_roots(document)
    step_keys = {s.get("key") for s in steps if isinstance(s, dict)}
    for index, step in enumerate(steps):
        issues += validate_step(step, f"steps[{index}]", roots, step_keys)
    return issues


def validate_trigger(trigger: Any, path: str) -> list[Issue]:
    if not isinstance(trigger, dict):
        return [(path, "a trigger must be an object")]
    issues: list[Issue] = [
        (f"{path}.{key}", f"unknown key '{key}'") for key in sorted(set(trigger) - TRIGGER_KEYS)
    ]
    event_type = trigger.get("event_type")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        issues.append(
            (
                f"{path}.event_type",
                "must be an event type such as 'lead.created' or a pattern 'deal.*'",
            )
        )
    priority = trigger.get("priority", 0)
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        issues.append((f"{path}.priority", "must be an integer"))
    issues += _type_issues(trigger.get("is_active"), f"{path}.is_active", bool, "true or false")
    conditions = trigger.get("conditions")
    if conditions:
        issues += [
            (i.path, i.message) for i in validate_condition(conditions, path=f"{path}.conditions")
        ]
        issues += _secret_in_conditions(conditions, f"{path}.conditions")
    return issues


def validate_step(step: Any, path: str, roots: set[str] | None, step_keys: set[Any]) -> list[Issue]:
    if not isinstance(step, dict):
        return []  # reported by the graph validation
    issues: list[Issue] = [
        (f"{path}.{key}", f"unknown key '{key}'") for key in sorted(set(step) - STEP_KEYS)
    ]
    type_name = step.get("type")
    step_type = get_step_type(type_name) if isinstance(type_name, str) else None
    if step_type is None:
        known = ", ".join(sorted(step_types()))
        issues.append((f"{path}.type", f"unknown step type {type_name!r} (known: {known})"))
    config = step.get("config", {})
    if not isinstance(config, dict):
        issues.append((f"{path}.config", "must be an object"))
        config = {}
    elif step_type is not None:
        validator = jsonschema.Draft202012Validator(step_type.schema)
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            where = _json_path(f"{path}.config", error.absolute_path)
            if error.validator == "required":
                where = f"{where}.{_missing_key(error)}"
            issues.append((where, _schema_message(error)))
        if step_type.check is not None:
            issues += step_type.check(config, f"{path}.config")
        issues += secret_policy_issues(step_type, config, f"{path}.config")
    step_roots = None if roots is None else roots
    for where, issue in validate_value(config, path=f"{path}.config", allowed_roots=step_roots):
        issues.append((where, issue.message))
    issues += _step_reference_issues(config, f"{path}.config", step_keys)
    conditions = step.get("conditions")
    if conditions:
        issues += [
            (i.path, i.message) for i in validate_condition(conditions, path=f"{path}.conditions")
        ]
        issues += _secret_in_conditions(conditions, f"{path}.conditions")
    issues += _type_issues(
        step.get("allow_failure"), f"{path}.allow_failure", bool, "true or false"
    )
    retry = step.get("retry")
    if retry is not None:
        issues += validate_retry(retry, f"{path}.retry")
    timeout = step.get("timeout_seconds")
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 86400
    ):
        issues.append((f"{path}.timeout_seconds", "must be an integer from 1 to 86400"))
    return issues


def _secret_in_conditions(conditions: Any, path: str) -> list[Issue]:
    """Conditions read the run's context, never secrets: a path or value naming
    ``secrets`` (a template, or the path ``secrets.NAME``) is refused."""
    issues: list[Issue] = []
    for where, text in _strings(conditions, path):
        if re.search(r"(^|\{\{\s*)secrets(\.|\s*(\||\}\}))", text):
            issues.append((where, "secret_not_allowed: conditions may not use secrets"))
    return issues


def _step_reference_issues(config: Any, path: str, step_keys: set[Any]) -> list[Issue]:
    """``{{steps.<key>...}}`` must name a step of this workflow."""
    issues: list[Issue] = []
    for match_path, text in _strings(config, path):
        for key in re.findall(r"\{\{\s*steps\.([A-Za-z_][A-Za-z0-9_]*)", text):
            if key not in step_keys:
                issues.append((match_path, f"unknown step '{key}' in template"))
    return issues


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}[{i}]")]
    return []


def validate_retry(retry: Any, path: str) -> list[Issue]:
    if not isinstance(retry, dict):
        return [(path, "must be an object")]
    issues = [(f"{path}.{key}", f"unknown key '{key}'") for key in sorted(set(retry) - RETRY_KEYS)]
    bounds = {
        "max_attempts": (1, 50),
        "backoff_seconds": (0, 3600),
        "max_backoff_seconds": (0, 86400),
    }
    for key, (low, high) in bounds.items():
        value = retry.get(key)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            issues.append((f"{path}.{key}", f"must be a number from {low} to {high}"))
    return issues


def _json_path(prefix: str, parts: Any) -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _missing_key(error: jsonschema.ValidationError) -> str:
    return error.message.split("'")[1] if "'" in error.message else "?"


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return "this key is required"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    if error.validator == "anyOf":
        return f"invalid value {error.instance!r}"
    return error.message
