"""``transition_task``: drive a task's lifecycle from a workflow.

Config (templated)::

    {"task": "{{steps.review.task_id}}", "action": "cancel",
     "input": {"reason": "superseded"}, "outcome": "superseded"}

The workflow acts as the system: it may fire any transition of the task's lifecycle, but
the transition must exist from the task's current state, lead into an enabled state, and
its guard must hold; otherwise the step fails with INVALID_TRANSITION (ACTION_DISABLED for
an action that is switched off). The change, its history row and its events commit with
the step's ActionRun.
"""

from __future__ import annotations

from typing import Any

from automation.actions import (
    StepConfigCode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
    templated,
)
from automation.actions.entities import is_templated
from config.errors import DomainError
from config.issues import Issue
from tasks_inbox.lifecycles import BUILTIN_DOCUMENTS, lifecycle_spec
from tasks_inbox.models import Task
from tasks_inbox.services import task_transition
from workflows.models import LifecycleTransition

SCHEMA = object_schema(
    {
        "task": templated({"type": ["integer", "string"]}),
        "action": {"type": "string", "minLength": 1, "maxLength": 64},
        "input": {"type": "object"},
        "outcome": {"type": "string", "maxLength": 64},
    },
    required=["task", "action"],
)


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """An action known on save must be a transition of some lifecycle (the task, and so
    its lifecycle, is only known at run time)."""
    action = config.get("action")
    if not isinstance(action, str) or is_templated(action):
        return []
    builtin = {
        transition.get("action")
        for document in BUILTIN_DOCUMENTS.values()
        for transition in document.get("transitions", [])
    }
    if action in builtin or LifecycleTransition.objects.filter(action=action).exists():
        return []
    return [
        Issue(
            f"{path}.action",
            StepConfigCode.UNKNOWN_LIFECYCLE_ACTION,
            f"no lifecycle has the action {action!r}",
        )
    ]


def _task_id(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StepFailed(f"task {value!r} is not a task id", code="TASK_NOT_FOUND") from None


@step_type("transition_task", schema=SCHEMA, label="Transition a task", check=check_config)
def transition_task(ctx: StepContext) -> StepResult:
    """Fire a lifecycle action on a task, as the system."""
    config = ctx.config
    task_id = _task_id(config["task"])
    try:
        before = _state(task_id)
        task = task_transition(
            task_id=task_id,
            action=str(config["action"]),
            actor=None,
            input=config.get("input") or {},
            outcome=config.get("outcome") or None,
        )
    except DomainError as exc:
        output = {"task_id": task_id, **exc.data}
        if exc.fields:
            output["fields"] = exc.fields
        code = "TASK_NOT_FOUND" if exc.code == "NOT_FOUND" else exc.code
        raise StepFailed(exc.message, code=code, output=output) from None
    return StepResult(
        output={
            "task_id": task.pk,
            "action": str(config["action"]),
            "from_state": before,
            "state": task.state,
            "outcome": task.outcome,
        }
    )


def _state(task_id: int) -> str:
    return Task.objects.filter(pk=task_id).values_list("state", flat=True).first() or ""


@dry_run_for("transition_task")
def transition_task_dry_run(ctx: StepContext) -> dict[str, Any]:
    task_id = _task_id(ctx.config["task"])
    task = Task.objects.select_related("lifecycle").filter(pk=task_id).first()
    if task is None:
        return {"would": f"fail: task {task_id} does not exist"}
    spec = lifecycle_spec(task.lifecycle)
    transition = spec.transitions.get(str(ctx.config["action"]))
    if transition is not None and not transition.is_enabled:
        return {"would": f"fail: '{transition.action}' is disabled (ACTION_DISABLED)"}
    if transition is None or task.state not in transition.from_states:
        allowed = [t.action for t in spec.leaving(task.state)]
        return {
            "would": f"fail: '{ctx.config['action']}' is not allowed from '{task.state}'",
            "allowed_actions": allowed,
        }
    return {"would": f"move task {task_id} from '{task.state}' to '{transition.to_state}'"}
