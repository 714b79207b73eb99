"""How tasks plug into the engine, all from ``TasksInboxConfig.ready()`` (:func:`register`):
the model registry, the step registry (``tasks_inbox.steps``), the Prometheus families
(``automation.metrics.register_metrics``) and the monitoring page's task reports
(``automation.monitoring.register_task_reports``). The engine never imports this app; a
task that ends tells it through ``automation.signals.waiting_step_ended``, and a run that is
cancelled cancels the open tasks it waited on (``automation.signals.run_cancelled``).

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


def export_visibility(user: Any) -> Q:
    """``visible_rows`` hook: staff are handled by the registry; no user sees nothing."""
    from tasks_inbox.selectors import visibility_filter

    if user is None or not getattr(user, "is_authenticated", False):
        return Q(pk__in=[])
    return visibility_filter(user)


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
    from automation.signals import run_cancelled
    from tasks_inbox import dashboard, selectors, steps
    from tasks_inbox.models import Task

    register_model(Task, name="task", exportable=EXPORTABLE, visibility=export_visibility)
    disconnect_model(Task)
    steps.register()
    register_metrics("tasks", selectors.task_metrics)
    run_cancelled.connect(on_run_cancelled, dispatch_uid="tasks_inbox.run_cancelled")
    register_task_reports(
        TaskReports(
            overdue_queues=lambda limit: selectors.queues_by_overdue(limit=limit),
            sla_compliance=lambda hours: selectors.sla_compliance(hours=hours),
            late_waits=dashboard.late_waits,
            queue_dashboard=lambda hours: dashboard.queue_dashboard(hours=hours),
        )
    )
