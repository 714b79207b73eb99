"""Reads of workflow definitions."""

from __future__ import annotations

from typing import Any

from workflows.definition import normalise
from workflows.models import Workflow, WorkflowVersion


def workflow_definition(workflow: Workflow) -> dict[str, Any]:
    """The workflow's current document, built from its authoring rows."""
    return normalise({
        "slug": workflow.slug,
        "name": workflow.name,
        "description": workflow.description,
        "is_active": workflow.is_active,
        "triggers": [
            {"event_type": t.event_type, "conditions": t.conditions, "priority": t.priority,
             "is_active": t.is_active}
            for t in workflow.triggers.order_by("id")
        ],
        "steps": [
            {"key": s.key, "type": s.type, "config": s.config, "conditions": s.conditions,
             "after": s.after, "allow_failure": s.allow_failure, "retry": s.retry,
             "timeout_seconds": s.timeout_seconds}
            for s in workflow.steps.order_by("position", "id")
        ],
    })


def latest_version(workflow: Workflow) -> WorkflowVersion | None:
    return workflow.versions.order_by("-number").first()
