"""SLA configs as documents: validation (every problem with its JSON path), the compiled form
the clock and the sweep read (``SLASpec``), and which config a task gets (``sla_config_for``).

A document (API body, admin form) has: ``name``, ``description``, ``is_active``, ``queue``
(a group name or id), ``task_type``, ``priority`` (``low``..``urgent``), ``target`` and
``warning_after`` (durations: ``"1:30:00"``, ``"PT90M"``, ``"90m"``, ``"4h"``, ``"2d"`` or
seconds), ``escalation_ladder``, ``start_state``, ``pause_while_blocked`` and
``working_hours``. See ``tasks_inbox.models.SLAConfig`` for their meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.db.models import Q
from django.utils.duration import duration_string

from config.durations import EXAMPLES as DURATION_EXAMPLES
from config.durations import DurationInvalid, parse_duration
from config.errors import Conflict, ValidationFailed
from config.issues import Issue, IssueCode
from config.references import group_named, users_named
from tasks_inbox.issue_codes import TaskIssueCode
from tasks_inbox.models import (
    SLAConfig,
    SLAEventKind,
    priority_name,
    priority_parse,
    priority_unknown,
)
from tasks_inbox.sla.calendar import WorkingHours

ACTION_TYPES = ("remind", "raise_priority", "reassign", "notify_manager")
ACTION_KEYS = {
    "remind": {"message"},
    "notify_manager": {"message"},
    "raise_priority": {"to"},
    "reassign": {"queue", "user"},
}
MAX_DURATION = timedelta(days=366)
MAX_LEVELS = 10
HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DOCUMENT_KEYS = {
    "name",
    "description",
    "is_active",
    "queue",
    "task_type",
    "priority",
    "target",
    "warning_after",
    "escalation_ladder",
    "start_state",
    "pause_while_blocked",
    "working_hours",
}


class SLAConfigInvalid(ValidationFailed):
    """An SLA config document failed validation; ``fields`` maps JSON paths to messages."""


class SLAConfigInUse(Conflict):
    code = "SLA_CONFIG_IN_USE"
    default_message = "Tasks use this SLA; deactivate it instead of deleting it."


# --- values -----------------------------------------------------------------------------


def duration_value(value: Any) -> timedelta | None:
    """A duration in the one grammar (``config.durations``), or None."""
    try:
        return parse_duration(value)
    except DurationInvalid:
        return None


def _duration_issues(value: Any, path: str) -> tuple[timedelta | None, list[Issue]]:
    parsed = duration_value(value)
    if parsed is None:
        return None, [
            Issue(
                path,
                TaskIssueCode.INVALID_DURATION,
                f"must be a duration such as {DURATION_EXAMPLES}",
            )
        ]
    if parsed <= timedelta(0):
        return None, [Issue(path, IssueCode.INVALID_VALUE, "must be positive")]
    if parsed > MAX_DURATION:
        return None, [
            Issue(path, IssueCode.INVALID_VALUE, f"must be at most {MAX_DURATION.days} days")
        ]
    return parsed, []


def _unknown_keys(value: dict[str, Any], allowed: set[str], path: str) -> list[Issue]:
    return [
        Issue(f"{path}.{key}" if path else str(key), IssueCode.UNKNOWN_KEY, f"unknown key '{key}'")
        for key in value
        if key not in allowed
    ]


# --- validation -------------------------------------------------------------------------


def _action_issues(action: Any, path: str) -> tuple[dict[str, Any], list[Issue]]:
    if not isinstance(action, dict):
        return {}, [Issue(path, IssueCode.INVALID_VALUE, "must be an object with a 'type'")]
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        return {}, [
            Issue(
                f"{path}.type",
                TaskIssueCode.UNKNOWN_ACTION,
                f"unknown action {kind!r} (known: {', '.join(ACTION_TYPES)})",
            )
        ]
    issues = _unknown_keys(action, ACTION_KEYS[kind] | {"type"}, path)
    clean: dict[str, Any] = {"type": kind}
    if kind in ("remind", "notify_manager") and "message" in action:
        message = action["message"]
        if not isinstance(message, str) or len(message) > 500:
            issues.append(
                Issue(
                    f"{path}.message",
                    IssueCode.INVALID_VALUE,
                    "must be text of at most 500 characters",
                )
            )
        else:
            clean["message"] = message
    if kind == "raise_priority" and action.get("to") is not None:
        value = priority_parse(action["to"])
        if value is None:
            issues.append(
                Issue(f"{path}.to", IssueCode.INVALID_VALUE, priority_unknown(action["to"]))
            )
        else:
            clean["to"] = priority_name(value)
    if kind == "reassign":
        queue, user = action.get("queue"), action.get("user")
        if (queue in (None, "")) == (user in (None, "")):
            issues.append(
                Issue(path, IssueCode.REQUIRED, "reassign needs either a 'queue' or a 'user'")
            )
        elif queue not in (None, ""):
            group = group_named(queue)
            if group is None:
                issues.append(
                    Issue(
                        f"{path}.queue",
                        TaskIssueCode.UNKNOWN_QUEUE,
                        f"no queue (group) named {queue!r}",
                    )
                )
            else:
                clean["queue"] = group.name
        else:
            found = users_named(user, active_only=True)
            if not found:
                issues.append(
                    Issue(f"{path}.user", TaskIssueCode.UNKNOWN_USER, f"no active user {user!r}")
                )
            elif len(found) > 1:
                issues.append(
                    Issue(
                        f"{path}.user",
                        TaskIssueCode.UNKNOWN_USER,
                        f"{user!r} names several users; give the id or the username",
                    )
                )
            else:
                clean["user"] = found[0].get_username()
    return clean, issues


def _ladder_issues(
    ladder: Any, target: timedelta | None
) -> tuple[list[dict[str, Any]], list[Issue]]:
    path = "escalation_ladder"
    if ladder in (None, ""):
        return [], []
    if not isinstance(ladder, list):
        return [], [Issue(path, IssueCode.INVALID_VALUE, "must be a list of levels")]
    if len(ladder) > MAX_LEVELS:
        return [], [Issue(path, IssueCode.TOO_LONG, f"at most {MAX_LEVELS} levels")]
    issues: list[Issue] = []
    levels: list[dict[str, Any]] = []
    previous: float | None = None
    for index, level in enumerate(ladder):
        where = f"{path}[{index}]"
        if not isinstance(level, dict):
            issues.append(
                Issue(
                    where,
                    IssueCode.INVALID_VALUE,
                    "must be an object with 'after' or 'after_percent' and 'actions'",
                )
            )
            continue
        issues += _unknown_keys(level, {"after", "after_percent", "actions"}, where)
        clean: dict[str, Any] = {}
        seconds: float | None = None
        if ("after" in level) == ("after_percent" in level):
            issues.append(
                Issue(
                    where,
                    TaskIssueCode.INVALID_DURATION,
                    "give exactly one of 'after' (a duration) or 'after_percent' (of the target)",
                )
            )
        elif "after" in level:
            after, found = _duration_issues(level["after"], f"{where}.after")
            issues += found
            if after is not None:
                clean["after"] = duration_string(after)
                seconds = after.total_seconds()
        else:
            percent = level["after_percent"]
            if (
                isinstance(percent, bool)
                or not isinstance(percent, int | float)
                or not (100 <= percent <= 10000)
            ):
                issues.append(
                    Issue(
                        f"{where}.after_percent",
                        IssueCode.INVALID_VALUE,
                        "must be a number from 100 to 10000 (percent of the target)",
                    )
                )
            else:
                clean["after_percent"] = percent
                if target is not None:
                    seconds = target.total_seconds() * percent / 100
        if seconds is not None and target is not None:
            if seconds < target.total_seconds():
                issues.append(
                    Issue(
                        where,
                        IssueCode.INVALID_VALUE,
                        "an escalation level cannot come before the target "
                        f"({duration_string(target)})",
                    )
                )
            elif previous is not None and seconds <= previous:
                issues.append(
                    Issue(where, IssueCode.INVALID_VALUE, "must come after the previous level")
                )
            previous = seconds if previous is None else max(previous, seconds)
        actions = level.get("actions")
        if not isinstance(actions, list) or not actions:
            issues.append(
                Issue(
                    f"{where}.actions",
                    IssueCode.INVALID_VALUE,
                    "must be a non-empty list of actions",
                )
            )
            actions = []
        clean["actions"] = []
        for number, action in enumerate(actions):
            cleaned, found = _action_issues(action, f"{where}.actions[{number}]")
            issues += found
            clean["actions"].append(cleaned)
        levels.append(clean)
    return levels, issues


def _working_hours_issues(value: Any) -> tuple[dict[str, Any] | None, list[Issue]]:
    path = "working_hours"
    if value in (None, "", {}):
        return None, []
    if not isinstance(value, dict):
        return None, [
            Issue(
                path,
                IssueCode.INVALID_VALUE,
                "must be an object with days, start, end and time_zone",
            )
        ]
    issues = _unknown_keys(value, {"days", "start", "end", "time_zone"}, path)
    days = value.get("days", [])
    if (
        not isinstance(days, list)
        or not days
        or len(set(map(str, days))) != len(days)
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days)
    ):
        issues.append(
            Issue(
                f"{path}.days",
                IssueCode.INVALID_VALUE,
                "must be a non-empty list of distinct weekdays, 0 (Monday) to 6 (Sunday)",
            )
        )
    times: dict[str, str] = {}
    for key in ("start", "end"):
        text = value.get(key)
        if not isinstance(text, str) or not HH_MM.match(text):
            issues.append(
                Issue(
                    f"{path}.{key}",
                    IssueCode.INVALID_VALUE,
                    "must be a time of day as HH:MM (24 hours)",
                )
            )
        else:
            times[key] = text
    if len(times) == 2 and times["start"] >= times["end"]:
        issues.append(
            Issue(
                f"{path}.end",
                IssueCode.INVALID_VALUE,
                "must be after the start (a window cannot cross midnight)",
            )
        )
    zone = value.get("time_zone")
    if not isinstance(zone, str) or zone not in available_timezones():
        issues.append(
            Issue(
                f"{path}.time_zone",
                IssueCode.INVALID_VALUE,
                f"unknown time zone {zone!r} (an IANA name such as Europe/Paris)",
            )
        )
    if issues:
        return None, issues
    return {
        "days": sorted(days),
        "start": times["start"],
        "end": times["end"],
        "time_zone": zone,
    }, []


def _start_state_issues(value: Any, pause: bool) -> tuple[str, list[Issue]]:
    from workflows.models import LifecycleState

    if value in (None, ""):
        return "", []
    if not isinstance(value, str):
        return "", [Issue("start_state", IssueCode.INVALID_VALUE, "must be a state key")]
    states = LifecycleState.objects.filter(key=value)
    if not states.exists():
        return "", [
            Issue("start_state", IssueCode.INVALID_VALUE, f"no lifecycle has a state '{value}'")
        ]
    if not states.filter(is_final=False).exists():
        return "", [
            Issue(
                "start_state",
                IssueCode.INVALID_VALUE,
                f"'{value}' is a final state: the clock would never run",
            )
        ]
    if pause and not states.filter(is_final=False, pauses_sla=False).exists():
        return "", [
            Issue(
                "start_state",
                IssueCode.INVALID_VALUE,
                f"the clock pauses in '{value}'; it cannot start there",
            )
        ]
    return value, []


def _nul_issues(value: Any, path: str) -> list[Issue]:
    """Text with NUL characters cannot be stored (nor looked up) in PostgreSQL."""
    if isinstance(value, str):
        return (
            [Issue(path, IssueCode.INVALID_VALUE, "must not contain NUL characters")]
            if "\x00" in value
            else []
        )
    if isinstance(value, dict):
        return [
            issue
            for key, item in value.items()
            for issue in _nul_issues(key, path)
            + _nul_issues(item, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(value, list):
        return [
            issue
            for index, item in enumerate(value)
            for issue in _nul_issues(item, f"{path}[{index}]")
        ]
    return []


def sla_config_clean(
    document: Any, *, instance: SLAConfig | None = None
) -> tuple[dict[str, Any], list[Issue]]:
    """The model field values of ``document`` and every problem with it (JSON paths)."""
    if not isinstance(document, dict):
        return {}, [Issue("", IssueCode.INVALID_VALUE, "an SLA config must be a JSON object")]
    nul = _nul_issues(document, "")
    if nul:
        return {}, nul
    issues = _unknown_keys(document, DOCUMENT_KEYS | {"id"}, "")
    values: dict[str, Any] = {}

    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 100:
        issues.append(
            Issue(
                "name", IssueCode.INVALID_VALUE, "must be non-empty text of at most 100 characters"
            )
        )
    else:
        values["name"] = name.strip()
        clash = SLAConfig.objects.filter(name=values["name"])
        if instance is not None and instance.pk:
            clash = clash.exclude(pk=instance.pk)
        if clash.exists():
            issues.append(
                Issue("name", IssueCode.DUPLICATE, f"another SLA is named '{values['name']}'")
            )
    description = document.get("description") or ""
    if not isinstance(description, str):
        issues.append(Issue("description", IssueCode.INVALID_VALUE, "must be text"))
    values["description"] = description if isinstance(description, str) else ""
    for key, default in (("is_active", True), ("pause_while_blocked", True)):
        flag = document.get(key, default)
        if not isinstance(flag, bool):
            issues.append(Issue(key, IssueCode.INVALID_VALUE, "must be true or false"))
        values[key] = bool(flag)

    queue = document.get("queue")
    values["queue"] = None
    if queue not in (None, ""):
        group = group_named(queue)
        if group is None:
            issues.append(
                Issue("queue", TaskIssueCode.UNKNOWN_QUEUE, f"no queue (group) {queue!r}")
            )
        values["queue"] = group
    task_type = document.get("task_type") or ""
    if not isinstance(task_type, str) or len(task_type) > 64:
        issues.append(
            Issue("task_type", IssueCode.INVALID_VALUE, "must be text of at most 64 characters")
        )
        task_type = ""
    values["task_type"] = task_type.strip()
    priority = document.get("priority")
    values["priority"] = None
    if priority not in (None, ""):
        values["priority"] = priority_parse(priority)
        if values["priority"] is None:
            issues.append(Issue("priority", IssueCode.INVALID_VALUE, priority_unknown(priority)))
    if queue in (None, "") and not values["task_type"]:
        issues.append(
            Issue("queue", IssueCode.REQUIRED, "an SLA must name a queue, a task type, or both")
        )

    target, found = (
        (None, [Issue("target", IssueCode.REQUIRED, "this field is required")])
        if document.get("target") in (None, "")
        else _duration_issues(document["target"], "target")
    )
    issues += found
    values["target"] = target
    values["warning_after"] = None
    if document.get("warning_after") not in (None, ""):
        warning, found = _duration_issues(document["warning_after"], "warning_after")
        issues += found
        if warning is not None and target is not None and warning >= target:
            issues.append(
                Issue(
                    "warning_after",
                    IssueCode.INVALID_VALUE,
                    f"must be less than the target ({duration_string(target)})",
                )
            )
        values["warning_after"] = warning
    values["escalation_ladder"], found = _ladder_issues(document.get("escalation_ladder"), target)
    issues += found
    values["working_hours"], found = _working_hours_issues(document.get("working_hours"))
    issues += found
    values["start_state"], found = _start_state_issues(
        document.get("start_state"), values["pause_while_blocked"]
    )
    issues += found

    if values["is_active"] and not any(
        issue.path in ("queue", "task_type", "priority") for issue in issues
    ):
        same = SLAConfig.objects.filter(
            is_active=True,
            queue=values["queue"],
            task_type=values["task_type"],
            priority=values["priority"],
        )
        if instance is not None and instance.pk:
            same = same.exclude(pk=instance.pk)
        other = same.first()
        if other is not None:
            issues.append(
                Issue(
                    "task_type" if values["task_type"] else "queue",
                    IssueCode.INVALID_VALUE,
                    f"the active SLA '{other.name}' has the same queue, task type and priority",
                )
            )
    return values, issues


def sla_config_document(config: SLAConfig) -> dict[str, Any]:
    """The config as a document (the API's read shape; saving it back changes nothing)."""
    return {
        "id": config.pk,
        "name": config.name,
        "description": config.description,
        "is_active": config.is_active,
        "queue": config.queue.name if config.queue is not None else None,
        "task_type": config.task_type,
        "priority": priority_name(config.priority) if config.priority is not None else None,
        "target": duration_string(config.target),
        "warning_after": duration_string(config.warning_after)
        if config.warning_after is not None
        else None,
        "escalation_ladder": config.escalation_ladder or [],
        "start_state": config.start_state,
        "pause_while_blocked": config.pause_while_blocked,
        "working_hours": config.working_hours,
        "specificity": SPECIFICITY_NAMES[sla_specificity(config)],
        "updated_at": config.updated_at.isoformat(),
    }


# --- the compiled form ------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A moment of the SLA, in clock seconds: the warning, the breach or a ladder level."""

    kind: str
    level: int
    seconds: float
    actions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SLASpec:
    config_id: int
    name: str
    is_active: bool
    target_seconds: float
    thresholds: tuple[Threshold, ...]
    start_state: str
    pause_while_blocked: bool
    hours: WorkingHours | None


def working_hours(value: dict[str, Any] | None) -> WorkingHours | None:
    if not value or not value.get("days"):
        return None
    try:
        zone = ZoneInfo(value["time_zone"])
    except (ZoneInfoNotFoundError, KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return WorkingHours(
        days=frozenset(int(d) for d in value["days"]),
        start=time.fromisoformat(value["start"]),
        end=time.fromisoformat(value["end"]),
        zone=zone,
    )


def sla_spec(config: SLAConfig) -> SLASpec:
    """The compiled config (thresholds in clock seconds, in the order they fire)."""
    target = config.target.total_seconds()
    thresholds = []
    if config.warning_after is not None:
        thresholds.append(Threshold(SLAEventKind.WARNING, 0, config.warning_after.total_seconds()))
    thresholds.append(Threshold(SLAEventKind.BREACH, 0, target))
    for number, level in enumerate(config.escalation_ladder or [], start=1):
        if "after_percent" in level:
            seconds = target * float(level["after_percent"]) / 100
        else:
            after = duration_value(level.get("after"))
            seconds = after.total_seconds() if after is not None else target
        thresholds.append(
            Threshold(SLAEventKind.ESCALATION, number, seconds, tuple(level.get("actions") or ()))
        )
    return SLASpec(
        config_id=config.pk,
        name=config.name,
        is_active=config.is_active,
        target_seconds=target,
        thresholds=tuple(thresholds),
        start_state=config.start_state,
        pause_while_blocked=config.pause_while_blocked,
        hours=working_hours(config.working_hours),
    )


# --- which config a task gets -----------------------------------------------------------

SPECIFICITY_NAMES = {
    7: "queue + task type + priority",
    6: "queue + task type",
    5: "task type + priority",
    4: "task type",
    3: "queue + priority",
    2: "queue",
    1: "priority only (never matches)",
    0: "nothing (never matches)",
}


def sla_specificity(config: SLAConfig) -> int:
    """Higher is more specific: a task type outweighs a queue, which outweighs a priority
    (the rule in ``tasks_inbox.models.SLA_SPECIFICITY_RULE``)."""
    return 4 * bool(config.task_type) + 2 * bool(config.queue_id) + (config.priority is not None)


def sla_config_for(*, queue_id: int | None, task_type: str, priority: int) -> SLAConfig | None:
    """The active config that governs a task with these attributes, or None."""
    candidates = list(
        SLAConfig.objects.filter(is_active=True)
        .filter(Q(queue_id=queue_id) | Q(queue__isnull=True) if queue_id else Q(queue__isnull=True))
        .filter(Q(task_type=task_type) | Q(task_type="") if task_type else Q(task_type=""))
        .filter(Q(priority=priority) | Q(priority__isnull=True))
        .exclude(queue__isnull=True, task_type="")
    )
    if not candidates:
        return None
    return max(candidates, key=lambda c: (sla_specificity(c), -c.pk))
