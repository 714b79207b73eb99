"""Live updates of the inbox: who hears about a task, a queue, a notification.

Registered with ``automation.live`` from ``TasksInboxConfig.ready()``. Each audience is
computed after the commit with the inbox's own visibility rule (``tasks_visible_to``, the rule
of the API and the pages), so a user never hears of a task they cannot open:

- ``task`` (id, state, event): the users who can see the task now: its assignee, the
  members of its queue while it is unassigned, its queue's managers, staff.
- ``queue`` (id): the members and managers of the queue and staff: "something in this queue
  changed". It carries no task, and it is how a member's queue page drops a task that
  another member has just claimed (which the member can no longer open).
- ``notification`` (id): its recipient.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from automation.live import Audience, publish_after_commit, register_topic
from tasks_inbox.models import Notification, Task
from tasks_inbox.selectors import tasks_visible_to


def task_audience(task_id: int) -> Audience:
    """Who may open task ``task_id`` (nobody once it is gone)."""
    task = Task.objects.filter(pk=task_id).values("assignee_id", "queue_id").first()
    if task is None:
        return Audience()
    near = Q(is_staff=True)
    if task["assignee_id"]:
        near |= Q(pk=task["assignee_id"])
    if task["queue_id"]:
        near |= Q(groups=task["queue_id"]) | Q(managed_queues__group=task["queue_id"])
    candidates = get_user_model().objects.filter(near, is_active=True).distinct()
    return Audience.users(
        user.pk for user in candidates if tasks_visible_to(user).filter(pk=task_id).exists()
    )


def queue_audience(queue_id: int) -> Audience:
    """The members and managers of queue (group) ``queue_id``, and staff."""
    users = (
        get_user_model()
        .objects.filter(
            Q(groups=queue_id) | Q(managed_queues__group=queue_id) | Q(is_staff=True),
            is_active=True,
        )
        .distinct()
        .values_list("pk", flat=True)
    )
    return Audience.users(users)


def notification_audience(notification_id: int) -> Audience:
    recipient = (
        Notification.objects.filter(pk=notification_id)
        .values_list("recipient_id", flat=True)
        .first()
    )
    return Audience.users([recipient] if recipient else [])


def task_changed(task: Task, event: str) -> None:
    """Tell the pages that ``task`` changed (after the commit)."""
    publish_after_commit("task", {"id": task.pk, "state": task.state, "event": event})
    if task.queue_id:
        publish_after_commit("queue", {"id": task.queue_id})


def notification_created(notification: Notification) -> None:
    publish_after_commit("notification", {"id": notification.pk})


def register() -> None:
    """Register the inbox's topics with ``automation.live``."""
    rules: dict[str, Any] = {
        "task": lambda payload: task_audience(payload["id"]),
        "queue": lambda payload: queue_audience(payload["id"]),
        "notification": lambda payload: notification_audience(payload["id"]),
    }
    for topic, rule in rules.items():
        register_topic(topic, rule)
