"""The workflow document: its canonical form and its validation.

The same JSON document is used by the API, the ``export_workflows``/``import_workflows``
commands, the admin's raw view and the version snapshots::

    {"slug", "name", "description", "is_active",
     "triggers": [{"event_type", "conditions", "priority", "is_active"}],
     "steps": [{"key", "type", "config", "conditions", "after", "allow_failure",
                "retry", "timeout_seconds"}]}

Validation reports :class:`config.issues.Issue` values (JSON path, stable code, message,
severity), e.g. ``Issue("triggers[0].conditions.and[1].operator", "UNKNOWN_OPERATOR",
"unknown operator 'equals'")``. A ``{{secrets.NAME}}`` outside the fields a step type sends
outward is refused with the code ``SECRET_NOT_ALLOWED`` and a message starting
``secret_not_allowed:`` (the policy is in ``automation.secrets``).
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from automation import graph
from automation.actions import get_step_type, step_types
from automation.catalogue import EventEntry, event_catalogue
from automation.conditions import validate_condition
from automation.secrets import secret_policy_issues
from automation.templating import validate_value
from config.issues import Issue, IssueCode, schema_issues
from workflows import domain
from workflows.errors import DefinitionCode

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


def _type_issues(
    value: object, path: str, expected: type | tuple[type, ...], label: str
) -> list[Issue]:
    if value is None:
        return []
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        return [Issue(path, IssueCode.INVALID_TYPE, f"must be {label}")]
    return []


def validate_definition(document: object) -> list[Issue]:
    """Every problem of a workflow document, each with the JSON path it is at."""
    if not isinstance(document, dict):
        return [Issue("", IssueCode.INVALID_TYPE, "a workflow definition must be a JSON object")]
    issues: list[Issue] = []
    for key in sorted(set(document) - TOP_KEYS - {"id", "version"}):
        issues.append(Issue(key, IssueCode.UNKNOWN_KEY, f"unknown key '{key}'"))
    slug = document.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        issues.append(
            Issue(
                "slug",
                DefinitionCode.INVALID_SLUG,
                "must be lowercase letters, digits, '-' or '_' (max 100)",
            )
        )
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        issues.append(
            Issue(
                "name",
                DefinitionCode.INVALID_NAME,
                "must be a non-empty string of at most 200 characters",
            )
        )
    issues += _type_issues(document.get("description"), "description", str, "a string")
    issues += _type_issues(document.get("is_active"), "is_active", bool, "true or false")

    triggers = document.get("triggers", [])
    if not isinstance(triggers, list):
        issues.append(Issue("triggers", IssueCode.INVALID_TYPE, "must be a list"))
        triggers = []
    elif len(triggers) > MAX_TRIGGERS:
        issues.append(
            Issue("triggers", DefinitionCode.TOO_MANY_TRIGGERS, f"at most {MAX_TRIGGERS} triggers")
        )
    entries = event_catalogue()
    for index, trigger in enumerate(triggers):
        issues += validate_trigger(trigger, f"triggers[{index}]", entries=entries)

    steps = document.get("steps", [])
    if not isinstance(steps, list):
        issues.append(Issue("steps", IssueCode.INVALID_TYPE, "must be a list"))
        return issues
    if len(steps) > MAX_STEPS:
        issues.append(Issue("steps", DefinitionCode.TOO_MANY_STEPS, f"at most {MAX_STEPS} steps"))
    issues += graph.validate_graph(steps, path="steps")
    step_keys = {s.get("key") for s in steps if isinstance(s, dict)}
    upstream = domain.upstream_steps(steps)
    event_types = [
        t["event_type"]
        for t in triggers
        if isinstance(t, dict) and isinstance(t.get("event_type"), str)
    ]
    shape = domain.shape_of(event_types, entries) if event_types else None
    for index, step in enumerate(steps):
        key = step.get("key") if isinstance(step, dict) else None
        issues += validate_step(
            step,
            f"steps[{index}]",
            None,
            step_keys,
            shape=shape,
            upstream=None
            if upstream is None
            else upstream.get(key if isinstance(key, str) else "", frozenset()),
        )
    return issues


def validate_trigger(
    trigger: object, path: str, *, entries: list[EventEntry] | None = None
) -> list[Issue]:
    """A trigger's problems; with the catalogue's ``entries``, also what needs the domain
    (an unknown event type, condition paths, operators and values its events refuse)."""
    if not isinstance(trigger, dict):
        return [Issue(path, IssueCode.INVALID_TYPE, "a trigger must be an object")]
    issues: list[Issue] = [
        Issue(f"{path}.{key}", IssueCode.UNKNOWN_KEY, f"unknown key '{key}'")
        for key in sorted(set(trigger) - TRIGGER_KEYS)
    ]
    event_type = trigger.get("event_type")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        issues.append(
            Issue(
                f"{path}.event_type",
                DefinitionCode.INVALID_EVENT_TYPE,
                "must be an event type such as 'lead.created' or a pattern 'deal.*'",
            )
        )
    priority = trigger.get("priority", 0)
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        issues.append(Issue(f"{path}.priority", IssueCode.INVALID_TYPE, "must be an integer"))
    issues += _type_issues(trigger.get("is_active"), f"{path}.is_active", bool, "true or false")
    known = event_type if isinstance(event_type, str) and EVENT_TYPE.match(event_type) else None
    if entries is not None and known is not None:
        issues += domain.event_type_issues(known, f"{path}.event_type", entries)
    conditions = trigger.get("conditions")
    if conditions:
        structure = validate_condition(conditions, path=f"{path}.conditions")
        issues += structure
        issues += _secret_in_conditions(conditions, f"{path}.conditions")
        if entries is not None and known is not None and not structure:
            shape = domain.shape_of([known], entries)
            issues += domain.condition_issues(conditions, f"{path}.conditions", shape, set(), None)
    return issues


def validate_step(
    step: object,
    path: str,
    roots: set[str] | None,
    step_keys: set[Any],
    *,
    shape: domain.EventShape | None = None,
    upstream: frozenset[str] | None = None,
    checks: bool = True,
) -> list[Issue]:
    """A step's problems. ``roots`` limits the variables templates may start with (None:
    any); ``shape`` is what its workflow's events carry and ``upstream`` the steps that run
    before it, for the checks that know the domain; ``checks=False`` leaves out the step
    type's own checks (which may look things up) and keeps to the structure."""
    if not isinstance(step, dict):
        return []  # reported by the graph validation
    issues: list[Issue] = [
        Issue(f"{path}.{key}", IssueCode.UNKNOWN_KEY, f"unknown key '{key}'")
        for key in sorted(set(step) - STEP_KEYS)
    ]
    type_name = step.get("type")
    step_type = get_step_type(type_name) if isinstance(type_name, str) else None
    if step_type is None:
        known = ", ".join(sorted(step_types()))
        issues.append(
            Issue(
                f"{path}.type",
                DefinitionCode.UNKNOWN_STEP_TYPE,
                f"unknown step type {type_name!r} (known: {known})",
            )
        )
    config = step.get("config", {})
    if not isinstance(config, dict):
        issues.append(Issue(f"{path}.config", IssueCode.INVALID_TYPE, "must be an object"))
        config = {}
    elif step_type is not None:
        validator = jsonschema.Draft202012Validator(step_type.schema)
        issues += schema_issues(validator, config, f"{path}.config")
        if checks and step_type.check is not None:
            issues += step_type.check(config, f"{path}.config")
        issues += secret_policy_issues(step_type, config, f"{path}.config")
    issues += validate_value(config, path=f"{path}.config", allowed_roots=roots)
    if checks:  # step references need the whole graph
        issues += domain.template_issues(config, f"{path}.config", shape, step_keys, upstream)
    conditions = step.get("conditions")
    if conditions:
        structure = validate_condition(conditions, path=f"{path}.conditions")
        issues += structure
        issues += _secret_in_conditions(conditions, f"{path}.conditions")
        if checks and not structure:
            issues += domain.condition_issues(
                conditions, f"{path}.conditions", shape, step_keys, upstream
            )
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
        issues.append(
            Issue(
                f"{path}.timeout_seconds",
                IssueCode.OUT_OF_RANGE,
                "must be an integer from 1 to 86400",
            )
        )
    return issues


def _secret_in_conditions(conditions: object, path: str) -> list[Issue]:
    """Conditions read the run's context, never secrets: a path or value naming
    ``secrets`` (a template, or the path ``secrets.NAME``) is refused."""
    issues: list[Issue] = []
    for where, text in _strings(conditions, path):
        if re.search(r"(^|\{\{\s*)secrets(\.|\s*(\||\}\}))", text):
            issues.append(
                Issue(
                    where,
                    DefinitionCode.SECRET_NOT_ALLOWED,
                    "secret_not_allowed: conditions may not use secrets",
                )
            )
    return issues


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}[{i}]")]
    return []


def validate_retry(retry: object, path: str) -> list[Issue]:
    if not isinstance(retry, dict):
        return [Issue(path, IssueCode.INVALID_TYPE, "must be an object")]
    issues = [
        Issue(f"{path}.{key}", IssueCode.UNKNOWN_KEY, f"unknown key '{key}'")
        for key in sorted(set(retry) - RETRY_KEYS)
    ]
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
            issues.append(
                Issue(
                    f"{path}.{key}",
                    IssueCode.OUT_OF_RANGE,
                    f"must be a number from {low} to {high}",
                )
            )
    return issues
