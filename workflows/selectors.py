"""Reads of workflow definitions."""

from __future__ import annotations

from typing import Any

from workflows.definition import normalise
from workflows.models import Workflow, WorkflowVersion


def workflow_definition(workflow: Workflow) -> dict[str, Any]:
    """The document of the authoring rows (the draft when there is one, else the current
    version), with the workflow's own (published) fields."""
    return normalise(
        {
            "slug": workflow.slug,
            "name": workflow.name,
            "description": workflow.description,
            "is_active": workflow.is_active,
            "triggers": [
                {
                    "key": t.key or None,
                    "event_type": t.event_type,
                    "conditions": t.conditions,
                    "priority": t.priority,
                    "is_active": t.is_active,
                }
                # Rows just added in the admin have no key yet: they come last.
                for t in sorted(
                    workflow.triggers.all(), key=lambda t: (not t.key, t.position, t.pk)
                )
            ],
            "steps": [
                {
                    "key": s.key,
                    "type": s.type,
                    "config": s.config,
                    "conditions": s.conditions,
                    "after": s.after,
                    "allow_failure": s.allow_failure,
                    "retry": s.retry,
                    "timeout_seconds": s.timeout_seconds,
                }
                for s in workflow.steps.order_by("position", "id")
            ],
        }
    )


def latest_version(workflow: Workflow) -> WorkflowVersion | None:
    return workflow.versions.order_by("-number").first()


def working_definition(workflow: Workflow) -> dict[str, Any]:
    """The document being edited: the draft if there is one, else the current version's."""
    if workflow.draft is not None:
        return workflow.draft
    if workflow.published_version is not None:
        return workflow.published_version.definition
    return workflow_definition(workflow)


DRAFT = "draft"


def definition_at(workflow: Workflow, which: str | None) -> dict[str, Any] | None:
    """The document of version ``which`` (a number), of the draft (``"draft"``), or of the
    current version (None). None when there is no such version."""
    if which == DRAFT:
        return working_definition(workflow)
    if which is None:
        version = workflow.published_version
    else:
        version = workflow.versions.filter(number=int(which)).first() if which.isdigit() else None
    return version.definition if version is not None else None


def _changes(before: dict[str, Any], after: dict[str, Any], names: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in names:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name == "config" and isinstance(old, dict) and isinstance(new, dict):
            changes[name] = {
                key: {"from": old.get(key), "to": new.get(key)}
                for key in sorted(set(old) | set(new))
                if old.get(key) != new.get(key)
            }
        else:
            changes[name] = {"from": old, "to": new}
    return changes


WORKFLOW_FIELDS = ["slug", "name", "description", "is_active"]
TRIGGER_FIELDS = ["event_type", "conditions", "priority", "is_active", "position"]
STEP_FIELDS = [
    "type",
    "config",
    "conditions",
    "after",
    "allow_failure",
    "retry",
    "timeout_seconds",
    "position",
]


def definition_diff(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What changes from document ``before`` (None: nothing yet) to ``after``.

    Workflow fields as ``{field: {"from", "to"}}``; triggers and steps matched by key
    (triggers of a document without keys by position), each list split into ``added``,
    ``removed`` and ``changed`` with per-field changes (``config`` per key, ``position``
    when it moved). ``has_changes`` says whether anything differs.
    """
    before = before or {"triggers": [], "steps": []}
    workflow = _changes(before, after, WORKFLOW_FIELDS) if before.get("slug") else {}

    def trigger_ids(items: list[dict[str, Any]]) -> dict[Any, tuple[int, dict[str, Any]]]:
        # By key; a document without keys (written before triggers had them) by position.
        return {t.get("key") or f"#{i}": (i, t) for i, t in enumerate(items)}

    old_triggers = trigger_ids(before.get("triggers") or [])
    new_triggers = trigger_ids(after.get("triggers") or [])
    triggers: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "changed": []}
    for key, (index, trigger) in new_triggers.items():
        if key not in old_triggers:
            triggers["added"].append({"index": index, "key": key, "trigger": trigger})
            continue
        old_index, old = old_triggers[key]
        changes = _changes(
            {**old, "position": old_index}, {**trigger, "position": index}, TRIGGER_FIELDS
        )
        if changes:
            triggers["changed"].append({"index": index, "key": key, "changes": changes})
    triggers["removed"] = [
        {"index": index, "key": key, "trigger": trigger}
        for key, (index, trigger) in old_triggers.items()
        if key not in new_triggers
    ]

    def keyed(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {step["key"]: {**step, "position": position} for position, step in enumerate(steps)}

    old_steps, new_steps = keyed(before.get("steps") or []), keyed(after.get("steps") or [])
    steps: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "changed": []}
    for key, step in new_steps.items():
        if key not in old_steps:
            steps["added"].append({"key": key, "step": step})
        else:
            changes = _changes(old_steps[key], step, STEP_FIELDS)
            if changes:
                steps["changed"].append({"key": key, "changes": changes})
    steps["removed"] = [
        {"key": key, "step": step} for key, step in old_steps.items() if key not in new_steps
    ]
    has_changes = bool(workflow) or any(triggers.values()) or any(steps.values())
    return {"workflow": workflow, "triggers": triggers, "steps": steps, "has_changes": has_changes}
