"""The human step types, driven in this process with the services a worker calls.

``create_task`` makes a task (routed, with a form, related to an object), and with ``wait``
parks the run until the task ends, then resumes it with ``steps.<key>`` = state, outcome,
result and who completed it. ``transition_task`` drives a task from a workflow. Task
lifecycle events start other workflows (the case-management chain).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from automation import services
from automation.events import emit
from automation.models import ActionRun, Event, Run
from crm.models import Lead
from tasks_inbox import services as tasks
from tasks_inbox.demo import CASE_ASSESSMENT, CASE_OPENED
from tasks_inbox.models import Priority, Task
from workflows.errors import DefinitionInvalid
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db

REVIEW_FORM = {
    "fields": [
        {
            "name": "amount",
            "type": "number",
            "label": "Approved amount",
            "min": 0,
            "required": True,
        },
        {"name": "approved", "type": "boolean"},
    ]
}


def order_workflow(**review: Any) -> None:
    workflow_save(
        document={
            "slug": "order-review",
            "name": "Order review",
            "triggers": [{"event_type": "order.placed"}],
            "steps": [
                {
                    "key": "review",
                    "type": "create_task",
                    "config": {
                        "title": "Review order {{order_id}}",
                        "assignee": "{{reviewer}}",
                        "priority": "urgent",
                        "task_type": "review",
                        "form": REVIEW_FORM,
                        "wait": True,
                        **review,
                    },
                },
                {
                    "key": "ship",
                    "type": "create_task",
                    "config": {
                        "title": "Ship {{steps.review.result.amount}} for order {{order_id}} "
                        "(approved by {{steps.review.completed_by.username}})",
                        "assignee": "{{reviewer}}",
                    },
                },
            ],
        }
    )


def settle(drain: Any, task: Task) -> Run:
    """After a task ended: advance the run it resumed (a worker does this after commit)."""
    services.run_advance(run_id=task.origin_run_id)
    drain()
    return Run.objects.get(pk=task.origin_run_id)


def test_create_task_waits_and_resumes_with_the_form_result(drain: Any, make_user: Any) -> None:
    reviewer = make_user("rita")
    order_workflow()
    emit("order.placed", {"order_id": 7, "reviewer": "rita@example.com"})
    drain()

    run = Run.objects.get()
    assert run.status == "waiting"
    task = Task.objects.get()
    step = ActionRun.objects.get(run=run, step_key="review")
    assert step.status == "waiting" and step.waiting_on == f"task:{task.pk}"
    assert (task.title, task.assignee, task.priority, task.task_type) == (
        "Review order 7",
        reviewer,
        Priority.URGENT,
        "review",
    )
    assert task.origin_action_run == step and task.origin_run == run and task.wait
    assert task.form == REVIEW_FORM

    tasks.task_transition(task_id=task.pk, action="start", actor=reviewer)
    tasks.task_complete(
        task_id=task.pk, actor=reviewer, data={"amount": "1500.50", "approved": True}
    )
    run = settle(drain, task)

    assert run.status == "completed"
    step.refresh_from_db()
    assert step.status == "completed"
    assert step.output == {
        "task_id": task.pk,
        "state": "completed",
        "outcome": "completed",
        "result": {"amount": 1500.5, "approved": True},
        "completed_by": {
            "id": reviewer.pk,
            "username": "rita",
            "email": "rita@example.com",
            "is_staff": False,
        },
    }
    ship = Task.objects.exclude(pk=task.pk).get()
    assert ship.title == "Ship 1500.5 for order 7 (approved by rita)"
    assert ship.origin_run == run and not ship.wait


def test_a_cancelled_task_fails_the_waiting_step_and_retry_makes_a_new_task(
    drain: Any, make_user: Any
) -> None:
    reviewer = make_user("rita")
    order_workflow()
    emit("order.placed", {"order_id": 8, "reviewer": "rita"})
    drain()
    task = Task.objects.get()
    tasks.task_transition(
        task_id=task.pk, action="cancel", actor=reviewer, input={"reason": "duplicate order"}
    )
    run = settle(drain, task)
    assert run.status == "failed"
    assert run.error_code == "TASK_CANCELLED"
    assert run.error == f"Step 'review' failed: Task #{task.pk} was cancelled: duplicate order"
    assert ActionRun.objects.get(run=run, step_key="ship").status == "cancelled"

    services.run_retry(run_id=run.pk)
    services.run_advance(run_id=run.pk)
    drain()
    fresh = Task.objects.exclude(pk=task.pk).get()
    assert fresh.origin_action_run.step_key == "review" and fresh.state == "new"
    task.refresh_from_db()
    assert task.origin_action_run is None and task.origin_run == run
    assert Run.objects.get(pk=run.pk).status == "waiting"


def test_a_repeated_execution_finds_the_task_it_made(drain: Any, make_user: Any) -> None:
    make_user("rita")
    order_workflow()
    emit("order.placed", {"order_id": 9, "reviewer": "rita"})
    drain()
    step = ActionRun.objects.get(step_key="review")
    # A redelivered message after the first execution committed (the step's row is
    # pending again, as a worker lost mid-way would leave it)
    ActionRun.objects.filter(pk=step.pk).update(status="pending", waiting_on="")
    services.step_execute(action_run_id=step.pk)
    step.refresh_from_db()
    assert Task.objects.count() == 1
    assert step.status == "waiting" and step.waiting_on == f"task:{Task.objects.get().pk}"


def test_assignee_from_the_lead_owner_with_due_date_and_related_object(
    drain: Any, make_user: Any
) -> None:
    owner = make_user("olga")
    workflow_save(
        document={
            "slug": "follow-up",
            "name": "Follow up",
            "triggers": [{"event_type": "lead.created"}],
            "steps": [
                {
                    "key": "follow_up",
                    "type": "create_task",
                    "config": {
                        "title": "Follow up with {{lead.company_name}}",
                        "assignee": "{{lead.owner.email}}",
                        "due_date": "{{today+2}}",
                        "priority": "high",
                        "entity_type": "lead",
                        "entity_id": "{{lead.id}}",
                    },
                }
            ],
        }
    )
    with transaction.atomic():
        lead = Lead.objects.create(company_name="Globex", owner=owner, annual_revenue=Decimal("10"))
    drain()
    task = Task.objects.get()
    assert task.title == "Follow up with Globex" and task.assignee == owner
    assert task.priority == Priority.HIGH
    due_day = timezone.localdate() + timedelta(days=2)
    assert task.due_at == timezone.make_aware(datetime.combine(due_day, time(23, 59, 59)))
    assert task.related == lead
    step = ActionRun.objects.get(step_key="follow_up")
    assert step.status == "completed"
    assert step.output["task_id"] == task.pk and step.output["assignee"] == "olga"
    created = Event.objects.get(type="task.created")
    assert created.payload["task"]["related"] == {"entity_type": "lead", "entity_id": str(lead.pk)}
    assert created.payload["task"]["assignee"]["email"] == "olga@example.com"


def test_an_unknown_assignee_fails_the_step(drain: Any) -> None:
    order_workflow()
    emit("order.placed", {"order_id": 10, "reviewer": "nobody@example.com"})
    drain()
    run = Run.objects.get()
    assert run.status == "failed" and run.error_code == "ASSIGNEE_NOT_FOUND"
    assert not Task.objects.exists()


def test_an_empty_assignee_falls_back_to_the_queue(drain: Any, make_user: Any) -> None:
    member = make_user("q1", groups=("Backoffice",))
    order_workflow(queue="Backoffice")
    emit("order.placed", {"order_id": 11})
    drain()
    assert Task.objects.get().assignee == member


def test_create_task_configs_are_validated_on_save() -> None:
    with pytest.raises(DefinitionInvalid) as info:
        workflow_save(
            document={
                "slug": "bad",
                "name": "Bad",
                "triggers": [{"event_type": "x.happened"}],
                "steps": [
                    {
                        "key": "t",
                        "type": "create_task",
                        "config": {
                            "title": "T",
                            "priority": "critical",
                            "form": {
                                "fields": [
                                    {"name": "pick", "type": "select"},
                                    {"name": "n", "type": "number", "min": 5, "max": 1},
                                    {"name": "x", "type": "slider"},
                                ]
                            },
                        },
                    }
                ],
            }
        )
    fields = info.value.fields
    assert fields["steps[0].config.assignee"] == ["give an assignee or a queue"]
    assert fields["steps[0].config.form.fields[0].choices"] == [
        "a select field needs a non-empty list of choices"
    ]
    assert fields["steps[0].config.form.fields[1].min"] == ["must not be greater than max"]
    assert fields["steps[0].config.form.fields[2].type"][0].startswith(
        "unknown field type 'slider'"
    )
    assert "steps[0].config.priority" in fields


def test_transition_task_drives_a_task_from_a_workflow(drain: Any, make_user: Any) -> None:
    agent = make_user("agent")
    task = tasks.task_create(title="Refund", assignee=agent)
    workflow_save(
        document={
            "slug": "auto-close",
            "name": "Auto close",
            "triggers": [{"event_type": "ticket.resolved"}],
            "steps": [
                {
                    "key": "start",
                    "type": "transition_task",
                    "config": {"task": "{{task_id}}", "action": "start"},
                },
                {
                    "key": "finish",
                    "type": "transition_task",
                    "config": {"task": "{{task_id}}", "action": "complete", "outcome": "resolved"},
                },
                {
                    "key": "again",
                    "type": "transition_task",
                    "config": {"task": "{{task_id}}", "action": "start"},
                },
            ],
        }
    )
    emit("ticket.resolved", {"task_id": task.pk})
    drain()
    task.refresh_from_db()
    assert (task.state, task.outcome, task.completed_by) == ("completed", "resolved", None)
    steps = {ar.step_key: ar for ar in ActionRun.objects.all()}
    assert steps["finish"].output == {
        "task_id": task.pk,
        "action": "complete",
        "from_state": "in_progress",
        "state": "completed",
        "outcome": "resolved",
    }
    assert steps["again"].status == "failed"
    assert steps["again"].error_code == "INVALID_TRANSITION"
    assert steps["again"].output["current_state"] == "completed"
    assert [h.action for h in task.history.all()] == ["create", "start", "complete"]
    assert [h.actor for h in task.history.all()] == [None, None, None]


def test_case_management_chain(drain: Any, make_user: Any) -> None:
    # Given the intake queue (members claim) and the assessment queue (least busy)
    intake_agent = make_user("ivan", groups=("Intake",))
    busy = make_user("anna", groups=("Assessment",))
    free = make_user("amir", groups=("Assessment",))
    tasks.task_create(title="Older work", assignee=busy)
    workflow_save(document=CASE_OPENED)
    workflow_save(document=CASE_ASSESSMENT)

    # When a case is opened, its intake task waits in the queue to be claimed
    emit("case.opened", {"subject": "Flooded basement"})
    drain()
    intake = Task.objects.get(task_type="intake")
    assert intake.title == "Intake: Flooded basement" and intake.assignee is None
    assert intake.queue == Group.objects.get(name="Intake")

    # and the agent claims and completes it
    tasks.task_claim(task_id=intake.pk, actor=intake_agent)
    tasks.task_complete(
        task_id=intake.pk,
        actor=intake_agent,
        data={"summary": "Water everywhere", "urgency": "high"},
    )
    drain()

    # Then task.completed starts a high-priority assessment for the least busy assessor
    assessment = Task.objects.get(task_type="assessment")
    assert assessment.priority == Priority.HIGH
    assert assessment.assignee == free
    assert assessment.title == "Assess: Intake: Flooded basement"
    assert assessment.description == ("Intake by ivan: Water everywhere (urgency high).")
    run = Run.objects.get(workflow__slug="case-intake-to-assessment")
    assert run.status == "completed" and run.event.type == "task.completed"
    assert run.event.payload["task"]["result"] == {"summary": "Water everywhere", "urgency": "high"}


def test_simulation_describes_create_task_without_creating(make_user: Any, api: Any) -> None:
    make_user("rita")
    order_workflow()
    from workflows.models import Workflow

    workflow = Workflow.objects.get(slug="order-review")
    response = api.post(
        f"/api/v1/workflows/{workflow.pk}/simulate/",
        {"payload": {"order_id": 3, "reviewer": "rita"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert not Task.objects.exists()
    assert "create a task and wait for it" in str(response.json())
