"""How tasks plug into the engine, all from ``TasksInboxConfig.ready()`` (:func:`register`):
the model registry, the step registry (``tasks_inbox.steps``), the Prometheus families
(``automation.metrics.register_metrics``) and the monitoring page's task reports
(``automation.monitoring.register_task_reports``). The engine never imports this app; a
task that ends tells it through ``automation.signals.waiting_step_ended``.

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

from typing import Any

from django.db.models import Q

EXPORTABLE = ["id", "title", "task_type", "priority", "state", "is_open", "outcome", "queue",
              "assignee", "lifecycle", "due_at", "sla_due_at", "created_at", "closed_at",
              "parent", "origin_run"]


def export_visibility(user: Any) -> Q:
    """``visible_rows`` hook: staff are handled by the registry; no user sees nothing."""
    from tasks_inbox.selectors import visibility_filter

    if user is None or not getattr(user, "is_authenticated", False):
        return Q(pk__in=[])
    return visibility_filter(user)


def register() -> None:
    from automation.metrics import register_metrics
    from automation.monitoring import TaskReports, register_task_reports
    from automation.receivers import disconnect_model
    from automation.registry import register_model
    from tasks_inbox import selectors, steps
    from tasks_inbox.models import Task

    register_model(Task, name="task", exportable=EXPORTABLE, visibility=export_visibility)
    disconnect_model(Task)
    steps.register()
    register_metrics("tasks", selectors.task_metrics)
    register_task_reports(TaskReports(
        overdue_queues=lambda limit: selectors.queues_by_overdue(limit=limit),
        sla_compliance=lambda hours: selectors.sla_compliance(hours=hours),
    ))
