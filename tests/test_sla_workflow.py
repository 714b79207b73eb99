"""Workflows react to SLA events: ``task.sla_breached`` runs a workflow that notifies the
queue's manager (the demo's ``sla-breach-alert``), driven by the engine in-process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.utils import timezone

from automation.models import Run
from tasks_inbox import services
from tasks_inbox.demo import SLA_BREACH_ALERT
from tasks_inbox.models import Notification, Queue
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.sweep import sla_sweep
from workflows.services import workflow_save

pytestmark = [pytest.mark.django_db]


def test_a_breach_runs_the_workflow_that_tells_the_manager(make_user: Any, drain: Any) -> None:
    # given: a queue with a manager, an SLA of 30 minutes and the breach workflow
    agent = make_user("agent", groups=("Claims",))
    manager = make_user("maria")
    Queue.objects.create(group=Group.objects.get(name="Claims")).managers.add(manager)
    sla_config_save(document={"name": "Claims", "queue": "Claims", "target": "30m"})
    workflow_save(document=SLA_BREACH_ALERT)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        task = services.task_create(
            title="Broken boiler", queue=Group.objects.get(name="Claims"), assignee=agent
        )
        drain()
        assert not Run.objects.filter(workflow__slug="sla-breach-alert").exists()

        # when: the SLA passes and the sweep runs
        clock.shift(timedelta(minutes=31))
        assert sla_sweep().fired == 1
        drain()
        # a second sweep fires nothing and starts no second run
        assert sla_sweep().fired == 0
        drain()

    # then: one run, completed, and the manager has the notification with the task's link
    run = Run.objects.get(workflow__slug="sla-breach-alert")
    assert run.status == "completed", run.error
    assert run.event.type == "task.sla_breached"
    note = Notification.objects.get(recipient=manager, message__startswith="SLA 'Claims'")
    assert note.message == "SLA 'Claims' breached: Broken boiler (assignee agent)"
    assert note.link == f"/inbox/tasks/{task.pk}/"


def test_the_breach_workflow_skips_queues_without_a_manager(make_user: Any, drain: Any) -> None:
    agent = make_user("agent", groups=("Claims",))
    sla_config_save(document={"name": "Claims", "queue": "Claims", "target": "30m"})
    workflow_save(document=SLA_BREACH_ALERT)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        services.task_create(title="Quiet", queue=Group.objects.get(name="Claims"), assignee=agent)
        clock.shift(timedelta(hours=1))
        assert sla_sweep().fired == 1
        drain()
    assert not Run.objects.filter(workflow__slug="sla-breach-alert").exists()
