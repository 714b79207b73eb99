"""How tasks plug into the engine's model registry.

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
    from automation.receivers import disconnect_model
    from automation.registry import register_model
    from tasks_inbox.models import Task

    register_model(Task, name="task", exportable=EXPORTABLE, visibility=export_visibility)
    disconnect_model(Task)
