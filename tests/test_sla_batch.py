"""The SLA sweep checks a batch with set-based statements: every due threshold fires once,
with its event and its notifications, and the statements do not grow with the batch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation.models import Event
from tasks_inbox import services
from tasks_inbox.models import Notification, Queue, SLAEventRecord, Task
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.sweep import sla_sweep

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def team(make_user: Any) -> tuple[list[Any], Any]:
    agents = [make_user(f"agent{i}", groups=("Claims",)) for i in range(3)]
    manager = make_user("boss")
    Queue.objects.create(group=Group.objects.get(name="Claims")).managers.add(manager)
    sla_config_save(
        document={
            "name": "Claims",
            "queue": "Claims",
            "target": "1h",
            "warning_after": "30m",
            "escalation_ladder": [{"after_percent": 300, "actions": [{"type": "remind"}]}],
        }
    )
    return agents, manager


def new_tasks(agents: list[Any], count: int, *, unassigned: int = 0) -> list[Task]:
    claims = Group.objects.get(name="Claims")
    tasks = [
        services.task_create(title=f"Claim {n}", queue=claims, assignee=agents[n % len(agents)])
        for n in range(count)
    ]
    for task in tasks[:unassigned]:  # the queue's managers hear of these
        Task.objects.filter(pk=task.pk).update(assignee=None)
    return tasks


def per_task(model_rows: Any) -> dict[Any, int]:
    return dict(model_rows.annotate(n=Count("id")))


def test_a_batch_fires_each_due_threshold_once_with_its_event_and_notices(
    make_user: Any,
) -> None:
    agents, manager = team(make_user)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = new_tasks(agents, 6, unassigned=2)
        clock.shift(timedelta(minutes=40))  # the warnings are due
        assert sla_sweep(batch_size=100).fired == 6
        clock.shift(timedelta(minutes=30))  # the breaches are due
        result = sla_sweep(batch_size=100)
        assert (result.claimed, result.fired, result.failed) == (6, 6, 0)
        assert sla_sweep(batch_size=100).claimed == 0  # next check: the level at 300%

    ids = [t.pk for t in tasks]
    records = SLAEventRecord.objects.filter(task_id__in=ids)
    assert per_task(records.values_list("task_id")) == {pk: 2 for pk in ids}
    for event_type in ("task.sla_warning", "task.sla_breached"):
        emitted = Event.objects.filter(type=event_type, entity_type="task")
        assert per_task(emitted.values_list("entity_id")) == {str(pk): 1 for pk in ids}
        event = emitted.get(entity_id=str(tasks[3].pk))
        assert event.payload["id"] == tasks[3].pk and event.payload["sla"]["config"] == "Claims"
        assert event.source == "task" and event.dispatched_at is None
    notices = Notification.objects.filter(message__startswith="SLA breached:")
    assert notices.filter(recipient=manager).count() == 2  # the two unassigned tasks
    for task in tasks[2:]:
        assert notices.filter(recipient=task.assignee, link=task.get_absolute_url()).exists()
    assert notices.count() == 6
    for task in Task.objects.filter(pk__in=ids):
        assert task.sla_warned_at == start + timedelta(minutes=40)
        assert task.sla_breached_at == start + timedelta(minutes=70)
        assert task.sla_next_check_at == start + timedelta(hours=3)


def test_the_statements_of_a_batch_do_not_grow_with_it(make_user: Any) -> None:
    agents, _ = team(make_user)
    start = timezone.now()
    counts = []
    with time_machine.travel(start, tick=False) as clock:
        for size in (1, 3, 12):  # the first warms the caches up
            new_tasks(agents, size)
            clock.shift(timedelta(minutes=40))
            with CaptureQueriesContext(connection) as queries:
                assert sla_sweep(batch_size=100).fired == size
            counts.append(len(queries.captured_queries))
            clock.shift(timedelta(hours=10))
            Task.objects.update(is_open=False, sla_next_check_at=None)
    assert counts[1] == counts[2], counts
