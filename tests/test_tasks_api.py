"""The task API: the inbox list with filters and sorting, completing with a form,
reassigning, escalating, stats, creating tasks by hand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from automation.models import Event
from tasks_inbox import services
from tasks_inbox.models import Queue, Task
from tests.conftest import as_user

pytestmark = pytest.mark.django_db

FORM = {
    "fields": [
        {"name": "summary", "type": "textarea", "required": True, "min": 5},
        {"name": "score", "type": "number", "min": 1, "max": 10, "required": True},
        {"name": "channel", "type": "select", "choices": ["phone", "email"], "required": True},
        {"name": "tags", "type": "multiselect", "choices": ["vip", "new", "churn"], "max": 2},
        {"name": "callback", "type": "boolean"},
        {"name": "follow_up_on", "type": "date", "min": "2020-01-01"},
    ]
}


@pytest.fixture
def agent(make_user: Any) -> Any:
    return make_user("agent", groups=("Desk",))


def started(agent: Any, **kwargs: Any) -> Task:
    task = services.task_create(
        title=kwargs.pop("title", "Call the client"), assignee=agent, **kwargs
    )
    return services.task_transition(task_id=task.pk, action="start", actor=agent)


def test_complete_validates_the_form_field_by_field(agent: Any) -> None:
    task = started(agent, form=FORM)
    client = as_user(agent)
    url = f"/api/v1/tasks/{task.pk}/complete/"
    refused = client.post(
        url,
        {
            "data": {
                "summary": "hi",
                "score": 11,
                "channel": "fax",
                "tags": ["vip", "new", "churn"],
                "colour": "red",
                "follow_up_on": "2019-12-31",
            }
        },
        format="json",
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["fields"] == {
        "data.summary": ["at least 5 characters"],
        "data.score": ["must be at most 10"],
        "data.channel": ["'fax' is not one of the choices"],
        "data.tags": ["choose at most 2"],
        "data.colour": ["not a field of this form"],
        "data.follow_up_on": ["must be on or after 2020-01-01"],
    }
    missing = client.post(url, {"data": {}}, format="json").json()["error"]["fields"]
    assert missing == {
        "data.summary": ["this field is required"],
        "data.score": ["this field is required"],
        "data.channel": ["this field is required"],
    }
    assert Task.objects.get(pk=task.pk).state == "in_progress"

    done = client.post(
        url,
        {
            "data": {
                "summary": "Called, all good",
                "score": "8",
                "channel": "phone",
                "tags": ["vip"],
                "follow_up_on": "2030-05-01",
            },
            "outcome": "resolved",
        },
        format="json",
    )
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["state"] == "completed" and body["outcome"] == "resolved"
    assert body["result"] == {
        "summary": "Called, all good",
        "score": 8,
        "channel": "phone",
        "tags": ["vip"],
        "callback": False,
        "follow_up_on": "2030-05-01",
    }
    assert body["completed_by"]["username"] == "agent" and body["closed_at"]
    completed = Event.objects.get(type="task.completed")
    assert completed.payload["task"]["result"]["score"] == 8
    assert completed.payload["actor"]["username"] == "agent"
    assert completed.payload["to_state"] == "completed"


def test_complete_from_a_state_that_cannot_complete(agent: Any) -> None:
    task = services.task_create(title="Not started", assignee=agent)
    refused = as_user(agent).post(f"/api/v1/tasks/{task.pk}/complete/", {}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "INVALID_TRANSITION"
    assert refused.json()["error"]["allowed_actions"] == ["start", "block", "cancel"]


def test_reassign_and_escalate(agent: Any, make_user: Any) -> None:
    manager, colleague = make_user("boss"), make_user("colleague", groups=("Desk",))
    desk = Group.objects.get(name="Desk")
    Queue.objects.create(group=desk).managers.add(manager)
    task = services.task_create(title="Escalate me", queue=desk, assignee=agent, priority="medium")
    as_manager = as_user(manager)

    moved = as_manager.post(
        f"/api/v1/tasks/{task.pk}/reassign/",
        {"assignee": colleague.pk, "reason": "agent is out"},
        format="json",
    )
    assert moved.status_code == 200 and moved.json()["assignee"]["username"] == "colleague"
    assert colleague.notifications.filter(message="Task reassigned to you: Escalate me").exists()

    raised = as_user(colleague).post(
        f"/api/v1/tasks/{task.pk}/escalate/", {"reason": "client angry"}, format="json"
    )
    assert raised.status_code == 200 and raised.json()["priority"] == "high"
    raised = as_manager.post(
        f"/api/v1/tasks/{task.pk}/escalate/",
        {"priority": "urgent", "assignee": manager.pk},
        format="json",
    )
    assert raised.json()["priority"] == "urgent"
    assert raised.json()["assignee"]["username"] == "boss"
    history = as_manager.get(f"/api/v1/tasks/{task.pk}/history/").json()["results"]
    assert [h["action"] for h in history] == ["create", "reassign", "escalate", "escalate"]
    assert history[1]["input"] == {
        "from": "agent",
        "to": "colleague",
        "queue": "Desk",
        "reason": "agent is out",
    }
    assert history[2]["input"]["from_priority"] == "medium"
    escalated = Event.objects.filter(type="task.escalated").order_by("pk")
    assert [e.payload["escalation"]["priority"] for e in escalated] == ["high", "urgent"]
    assert manager.notifications.filter(message__startswith="Task escalated").exists()

    to_queue = as_manager.post(
        f"/api/v1/tasks/{task.pk}/reassign/", {"queue": desk.pk}, format="json"
    )
    assert to_queue.json()["assignee"]["username"] in {"agent", "colleague"}


def test_list_filters_and_sorting(agent: Any) -> None:
    now = timezone.now()
    services.task_create(
        title="low later",
        assignee=agent,
        priority="low",
        due_at=now + timedelta(days=3),
        task_type="call",
    )
    services.task_create(title="urgent", assignee=agent, priority="urgent", task_type="call")
    services.task_create(
        title="high overdue",
        assignee=agent,
        priority="high",
        due_at=now - timedelta(hours=1),
        task_type="mail",
    )
    services.task_create(
        title="high soon",
        assignee=agent,
        priority="high",
        due_at=now + timedelta(hours=1),
        task_type="mail",
    )
    done = started(agent, title="done")
    services.task_complete(task_id=done.pk, actor=agent)
    client = as_user(agent)

    def titles(query: str = "") -> list[str]:
        response = client.get(f"/api/v1/tasks/?{query}")
        assert response.status_code == 200, response.content
        return [item["title"] for item in response.json()["results"]]

    assert titles("open=true") == ["urgent", "high overdue", "high soon", "low later"]
    assert titles("open=true&sort=due") == ["high overdue", "high soon", "low later", "urgent"]
    assert titles("open=true&sort=-priority") == [
        "low later",
        "high overdue",
        "high soon",
        "urgent",
    ]
    assert titles("open=true&ordering=due_at") == titles("open=true&sort=due")
    assert titles("open=true&ordering=-priority") == titles("open=true")
    assert titles("overdue=true") == ["high overdue"]
    assert titles("priority=high") == ["high overdue", "high soon"]
    assert titles("task_type=call") == ["urgent", "low later"]
    assert titles("state=completed") == ["done"]
    assert titles("assignee=me&open=false") == ["done"]
    assert titles("q=soon") == ["high soon"]
    bad = client.get("/api/v1/tasks/?priority=extreme")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"

    stats = client.get("/api/v1/tasks/stats/").json()
    assert stats["total"] == 5 and stats["open"] == 4 and stats["overdue"] == 1
    assert stats["mine"] == 4 and stats["claimable"] == 0
    assert stats["by_state"] == {"completed": 1, "new": 4}
    assert stats["by_priority"] == {"urgent": 1, "high": 2, "low": 1}


def test_detail_shows_form_related_object_and_origin(agent: Any, api: APIClient) -> None:
    from crm.models import Lead

    lead = Lead.objects.create(company_name="Initech")
    task = services.task_create(title="With a lead", assignee=agent, form=FORM, related=lead)
    body = as_user(agent).get(f"/api/v1/tasks/{task.pk}/").json()
    assert body["related"] == {"entity_type": "lead", "entity_id": str(lead.pk), "label": "Initech"}
    assert body["form"] == FORM and body["lifecycle"] == "task"
    assert body["origin_run"] is None and body["origin_step"] is None
    actions = as_user(agent).get(f"/api/v1/tasks/{task.pk}/available-actions/").json()
    assert [a["action"] for a in actions["actions"]] == ["start", "block", "cancel"]
    assert actions["actions"][1]["required_input"] == ["reason"]
    assert actions["can_claim"] is False


def test_creating_tasks_by_hand(agent: Any, make_user: Any, api: APIClient) -> None:
    outsider = make_user("outsider")
    client = as_user(agent)
    own = client.post("/api/v1/tasks/", {"title": "Note to self"}, format="json")
    assert own.status_code == 201 and own.json()["assignee"]["username"] == "agent"
    in_queue = client.post(
        "/api/v1/tasks/",
        {"title": "For the desk", "routing": "claim", "queue": Group.objects.get(name="Desk").pk},
        format="json",
    )
    assert in_queue.status_code == 201 and in_queue.json()["assignee"] is None
    refused = client.post(
        "/api/v1/tasks/", {"title": "For someone", "assignee": outsider.pk}, format="json"
    )
    assert refused.status_code == 403
    bad_form = api.post(
        "/api/v1/tasks/",
        {"title": "Bad", "assignee": agent.pk, "form": {"fields": [{"name": "x", "type": "?"}]}},
        format="json",
    )
    assert bad_form.status_code == 400
    assert list(bad_form.json()["error"]["fields"]) == ["form.fields[0].type"]
    plan = api.post(
        "/api/v1/tasks/",
        {"title": "Plan", "lifecycle": "plan", "assignee": agent.pk},
        format="json",
    ).json()
    assert plan["state"] == "draft"
    child = api.post(
        "/api/v1/tasks/",
        {"title": "Step 1", "parent": plan["id"], "assignee": agent.pk},
        format="json",
    ).json()
    assert child["parent"] == plan["id"]
    assert [
        t["title"] for t in client.get(f"/api/v1/tasks/?parent={plan['id']}").json()["results"]
    ] == ["Step 1"]
    unknown = api.post(
        "/api/v1/tasks/", {"title": "?", "lifecycle": "nope", "assignee": agent.pk}, format="json"
    )
    assert unknown.json()["error"]["fields"] == {"lifecycle": ["unknown lifecycle 'nope'"]}
