"""How tasks plug into the engine, all from ``TasksInboxConfig.ready()`` (:func:`register`):
the model registry, the step registry (``tasks_inbox.steps``), the Prometheus families
(``automation.metrics.register_metrics``) and the monitoring page's task reports
(``automation.monitoring.register_task_reports``). The engine never imports this app; a
task that ends tells it through ``automation.signals.waiting_step_ended``, and a run that is
cancelled cancels the open tasks it waited on (``automation.signals.run_cancelled``), having
locked them first (``run_cancelling``).

Tasks are registered as ``task`` so that exports (``enqueue_export``) and notes
(``add_note``) can reach them, with the inbox's visibility rule as the registration's
visibility hook: the same rule in the API, the pages and exports. Nothing is writable
through ``update_field``: a task changes state only through its lifecycle.

A task's events come from ``tasks_inbox.services`` (``task.created``, ``task.transitioned``,
``task.completed``...), with the transition and the actor; the generic model-signal events
(``task.created``/``task.updated`` from ``post_save``) would duplicate them, so the
registration's signal receivers are disconnected.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Q

from config.errors import DomainError

logger = logging.getLogger(__name__)

EXPORTABLE = [
    "id",
    "title",
    "task_type",
    "priority",
    "state",
    "is_open",
    "outcome",
    "queue",
    "assignee",
    "lifecycle",
    "due_at",
    "sla_due_at",
    "created_at",
    "closed_at",
    "parent",
    "origin_run",
]


_USER = {"type": ["object", "null"], "format": "user"}
_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_ID_OR_NULL = {"type": ["integer", "null"]}
_MOMENT = {"type": ["string", "null"], "format": "date-time"}
_OPEN_OBJECT = {"type": ["object", "null"], "additionalProperties": True}
# The task as its events carry it (``tasks_inbox.selectors.task_context``): under ``task``
# and, for short paths, at the top level too.
TASK_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "title": _TEXT,
        "description": _TEXT,
        "task_type": _TEXT,
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "state": _TEXT,
        "is_open": {"type": "boolean"},
        "outcome": _TEXT,
        "lifecycle": _TEXT,
        "assignee_id": _ID_OR_NULL,
        "assignee": {
            **_USER,
            "properties": {
                "id": {"type": "integer"},
                "username": _TEXT,
                "email": _TEXT,
                "is_staff": {"type": "boolean"},
            },
        },
        "queue_id": _ID_OR_NULL,
        "queue": {
            "type": ["object", "null"],
            "properties": {"id": {"type": "integer"}, "name": _TEXT},
        },
        "created_by": _USER,
        "completed_by": _USER,
        "due_at": _MOMENT,
        "sla_due_at": _MOMENT,
        "created_at": _MOMENT,
        "closed_at": _MOMENT,
        "result": _OPEN_OBJECT,
        "related": {
            "type": ["object", "null"],
            "properties": {"entity_type": _TEXT, "entity_id": _TEXT_OR_NULL},
        },
        "parent_id": _ID_OR_NULL,
        "origin_run_id": _ID_OR_NULL,
    },
}
_TRANSITION = {
    "transition": {
        "type": "object",
        "properties": {
            "action": _TEXT,
            "from_state": _TEXT,
            "to_state": _TEXT,
            "input": _OPEN_OBJECT,
        },
    },
    "action": _TEXT,
    "from_state": _TEXT,
    "to_state": _TEXT,
}
# Event type -> (kind, what the event adds to the task, description).
TASK_EVENTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "task.created": ("task", {}, "A task was created (by a person, the API or a workflow)."),
    "task.assigned": (
        "task",
        {"assignment": _OPEN_OBJECT},
        "A task was claimed or reassigned (assignment.kind says which).",
    ),
    "task.transitioned": ("task", _TRANSITION, "A task took a lifecycle transition."),
    "task.completed": ("task", _TRANSITION, "A task reached a final state."),
    "task.cancelled": ("task", _TRANSITION, "A task reached a cancelling final state."),
    "task.escalated": (
        "task",
        {"escalation": _OPEN_OBJECT, "sla": _OPEN_OBJECT},
        "A task was escalated, by a person or by an SLA level.",
    ),
    "task.sla_warning": ("sla", {"sla": _OPEN_OBJECT}, "A task's SLA is about to be breached."),
    "task.sla_breached": ("sla", {"sla": _OPEN_OBJECT}, "A task's SLA target passed."),
}


def declare_task_events() -> None:
    """Tell the engine's event catalogue which events tasks raise, and their contexts."""
    from automation.catalogue import declare_event

    for event_type, (kind, extra, description) in TASK_EVENTS.items():
        schema = {
            "type": "object",
            "properties": {
                "task": TASK_SCHEMA,
                "entity_type": {"type": "string", "enum": ["task"]},
                **extra,
            },
        }
        declare_event(event_type, schema=schema, kind=kind, description=description)
    # The demo's guided portfolio process and case management start from domain events.
    declare_event(
        "portfolio.requested",
        schema={
            "type": "object",
            "properties": {"client": {"type": "string"}, "advisor": {"type": "string"}},
        },
        description="A client asked for a portfolio (raised by the host code).",
    )
    declare_event(
        "case.opened",
        schema={"type": "object", "properties": {"subject": {"type": "string"}}},
        description="A case was opened (raised by the host code).",
    )


def export_visibility(user: Any) -> Q:
    """``visible_rows`` hook: staff are handled by the registry; no user sees nothing."""
    from tasks_inbox.selectors import visibility_filter

    if user is None or not getattr(user, "is_authenticated", False):
        return Q(pk__in=[])
    return visibility_filter(user)


def on_run_cancelling(
    sender: Any, *, run_id: int, waiting_action_run_ids: list[int], **kwargs: Any
) -> None:
    """Receiver of ``automation.signals.run_cancelling``: lock the open tasks the run waits
    on (in id order) before the engine locks its steps, the order a task's completion takes
    them (the task, then the step it ends), so a cancel and a completion never deadlock."""
    from tasks_inbox.models import Task

    list(
        Task.objects.select_for_update()
        .filter(origin_action_run_id__in=waiting_action_run_ids, is_open=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def on_run_cancelled(
    sender: Any, *, run_id: int, waiting_action_run_ids: list[int], **kwargs: Any
) -> None:
    """Receiver of ``automation.signals.run_cancelled``: cancel the open tasks the run waited
    on, through their lifecycle's cancelling transition (in the run's transaction). A task
    whose lifecycle has no cancelling transition from its state is left open, and logged."""
    from tasks_inbox.lifecycles import lifecycle_spec
    from tasks_inbox.models import Task
    from tasks_inbox.services import task_transition

    tasks = Task.objects.select_related("lifecycle").filter(
        origin_action_run_id__in=waiting_action_run_ids, is_open=True
    )
    for task in tasks:
        spec = lifecycle_spec(task.lifecycle)
        cancel = next(
            (t for t in spec.leaving(task.state) if spec.states[t.to_state].is_cancellation), None
        )
        if cancel is None:
            logger.warning(
                "task %s of cancelled run %s: no cancelling transition from %r",
                task.pk,
                run_id,
                task.state,
            )
            continue
        try:
            with transaction.atomic():
                task_transition(
                    task_id=task.pk,
                    action=cancel.action,
                    actor=None,
                    input={"reason": f"Run #{run_id} was cancelled."},
                )
        except DomainError as exc:  # a guard or required input the system cannot meet
            logger.warning("task %s of cancelled run %s stays open: %s", task.pk, run_id, exc)


def register() -> None:
    from automation.metrics import register_metrics
    from automation.monitoring import TaskReports, register_task_reports
    from automation.receivers import disconnect_model
    from automation.registry import register_model
    from automation.signals import run_cancelled, run_cancelling
    from tasks_inbox import dashboard, selectors, steps
    from tasks_inbox.demo import declare_demo_events
    from tasks_inbox.models import Task

    register_model(Task, name="task", exportable=EXPORTABLE, visibility=export_visibility)
    disconnect_model(Task)
    declare_task_events()
    declare_demo_events()
    steps.register()
    register_metrics("tasks", selectors.task_metrics)
    run_cancelling.connect(on_run_cancelling, dispatch_uid="tasks_inbox.run_cancelling")
    run_cancelled.connect(on_run_cancelled, dispatch_uid="tasks_inbox.run_cancelled")
    register_task_reports(
        TaskReports(
            overdue_queues=lambda limit: selectors.queues_by_overdue(limit=limit),
            sla_compliance=lambda hours: selectors.sla_compliance(hours=hours),
            late_waits=dashboard.late_waits,
            queue_dashboard=lambda hours: dashboard.queue_dashboard(hours=hours),
        )
    )
