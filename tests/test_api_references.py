"""Users and queues are referred to the same way everywhere (task create, reassign,
escalate, task filters, SLA configs): a user by id, username or email, a queue by id or
name; a reference naming nothing or several answers 400 VALIDATION_ERROR naming the
parameter, with the stable reason in ``codes``. The queues list, and an agent reading the
lifecycle of a task it can see."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from tasks_inbox import services
from tasks_inbox.models import Queue, SLAConfig, Task
from tests.conftest import as_user

pytestmark = pytest.mark.django_db


def refused(response: Any, field: str, reason: str) -> None:
    """400 VALIDATION_ERROR naming ``field``, with ``reason`` as its code."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["fields"]
    assert error["codes"][field] == reason


@pytest.fixture
def desk(make_user: Any) -> dict[str, Any]:
    agent = make_user("agent", groups=("Desk",))
    colleague = make_user("colleague", groups=("Desk",))
    manager = make_user("boss")
    group = Group.objects.get(name="Desk")
    Queue.objects.create(group=group).managers.add(manager)
    return {"agent": agent, "colleague": colleague, "manager": manager, "group": group}


def test_task_create_takes_a_username_an_email_or_an_id(
    api: APIClient, desk: dict[str, Any]
) -> None:
    for reference in (
        "colleague",
        "COLLEAGUE@example.com",
        desk["colleague"].pk,
        str(desk["colleague"].pk),
    ):
        response = api.post(
            "/api/v1/tasks/", {"title": "Call", "assignee": reference}, format="json"
        )
        assert response.status_code == 201, (reference, response.content)
        assert response.json()["assignee"]["username"] == "colleague"
    for reference in ("Desk", desk["group"].pk, str(desk["group"].pk)):
        response = api.post(
            "/api/v1/tasks/",
            {"title": "Queue it", "queue": reference, "routing": "claim"},
            format="json",
        )
        assert response.status_code == 201, (reference, response.content)
        assert response.json()["queue"]["name"] == "Desk"


def test_unknown_and_ambiguous_references(
    api: APIClient, desk: dict[str, Any], make_user: Any
) -> None:
    refused(
        api.post("/api/v1/tasks/", {"title": "x", "assignee": "ghost"}, format="json"),
        "assignee",
        "UNKNOWN_USER",
    )
    refused(
        api.post("/api/v1/tasks/", {"title": "x", "assignee": "ghost@example.com"}, format="json"),
        "assignee",
        "UNKNOWN_USER",
    )
    refused(
        api.post("/api/v1/tasks/", {"title": "x", "assignee": True}, format="json"),
        "assignee",
        "UNKNOWN_USER",
    )
    refused(
        api.post("/api/v1/tasks/", {"title": "x", "queue": "Nowhere"}, format="json"),
        "queue",
        "UNKNOWN_QUEUE",
    )
    refused(
        api.post("/api/v1/tasks/", {"title": "x", "queue": ["Desk"]}, format="json"),
        "queue",
        "UNKNOWN_QUEUE",
    )
    # two users share an email: the email names neither, the username still does
    twin = make_user("twin")
    twin.email = "colleague@example.com"
    twin.save(update_fields=["email"])
    refused(
        api.post(
            "/api/v1/tasks/", {"title": "x", "assignee": "colleague@example.com"}, format="json"
        ),
        "assignee",
        "AMBIGUOUS_USER",
    )
    assert (
        api.post("/api/v1/tasks/", {"title": "x", "assignee": "twin"}, format="json").status_code
        == 201
    )
    # a username that is another user's id
    numbered = make_user(str(desk["agent"].pk))
    refused(
        api.post(
            "/api/v1/tasks/", {"title": "x", "assignee": str(desk["agent"].pk)}, format="json"
        ),
        "assignee",
        "AMBIGUOUS_USER",
    )
    by_id = api.post("/api/v1/tasks/", {"title": "x", "assignee": numbered.pk}, format="json")
    assert by_id.status_code == 201 and by_id.json()["assignee"]["id"] == numbered.pk
    # a queue named like another queue's id
    Group.objects.create(name=str(desk["group"].pk))
    refused(
        api.post("/api/v1/tasks/", {"title": "x", "queue": str(desk["group"].pk)}, format="json"),
        "queue",
        "AMBIGUOUS_QUEUE",
    )
    assert set(Task.objects.filter(title="x").values_list("assignee__username", flat=True)) == {
        "twin",
        numbered.username,
    }


def test_reassign_and_escalate_by_email_and_queue_name(desk: dict[str, Any]) -> None:
    task = services.task_create(title="Hand on", assignee=desk["agent"], queue=desk["group"])
    as_manager = as_user(desk["manager"])
    moved = as_manager.post(
        f"/api/v1/tasks/{task.pk}/reassign/", {"assignee": "colleague@example.com"}, format="json"
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["assignee"]["username"] == "colleague"
    refused(
        as_manager.post(
            f"/api/v1/tasks/{task.pk}/reassign/", {"assignee": "nobody"}, format="json"
        ),
        "assignee",
        "UNKNOWN_USER",
    )
    refused(
        as_manager.post(f"/api/v1/tasks/{task.pk}/reassign/", {"queue": "Nowhere"}, format="json"),
        "queue",
        "UNKNOWN_QUEUE",
    )
    raised = as_manager.post(
        f"/api/v1/tasks/{task.pk}/escalate/", {"assignee": "boss", "queue": "Desk"}, format="json"
    )
    assert raised.status_code == 200 and raised.json()["assignee"]["username"] == "boss"
    refused(
        as_manager.post(f"/api/v1/tasks/{task.pk}/escalate/", {"assignee": "ghost"}, format="json"),
        "assignee",
        "UNKNOWN_USER",
    )
    assert Task.objects.get(pk=task.pk).assignee == desk["manager"]


def test_task_filters_take_the_same_references(desk: dict[str, Any]) -> None:
    mine = services.task_create(title="Mine", assignee=desk["colleague"], queue=desk["group"])
    services.task_create(title="Other", assignee=desk["manager"])
    client = as_user(desk["manager"])
    for reference in ("colleague", "colleague@example.com", str(desk["colleague"].pk)):
        rows = client.get("/api/v1/tasks/", {"assignee": reference}).json()["results"]
        assert [row["id"] for row in rows] == [mine.pk], reference
    for reference in ("Desk", str(desk["group"].pk)):
        rows = client.get("/api/v1/tasks/", {"queue": reference}).json()["results"]
        assert [row["id"] for row in rows] == [mine.pk], reference
    refused(client.get("/api/v1/tasks/", {"assignee": "ghost"}), "assignee", "UNKNOWN_USER")
    refused(client.get("/api/v1/tasks/", {"queue": "Nowhere"}), "queue", "UNKNOWN_QUEUE")
    refused(client.get("/api/v1/tasks/", {"state": "limbo"}), "state", "UNKNOWN_STATE")
    refused(client.get("/api/v1/tasks/", {"run": "999999"}), "run", "UNKNOWN_RUN")
    refused(client.get("/api/v1/tasks/", {"priority": "asap"}), "priority", "invalid_choice")
    rows = client.get("/api/v1/tasks/", {"state": "new"}).json()["results"]
    assert mine.pk in [row["id"] for row in rows]


SLA = {
    "name": "Desk SLA",
    "queue": "Desk",
    "target": "4h",
    "escalation_ladder": [
        {"after": "4h", "actions": [{"type": "reassign", "user": "boss@example.com"}]}
    ],
}


def test_sla_configs_take_the_same_references(api: APIClient, desk: dict[str, Any]) -> None:
    created = api.post("/api/v1/sla-configs/", {**SLA, "queue": desk["group"].pk}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["queue"] == "Desk"
    assert body["escalation_ladder"][0]["actions"][0]["user"] == "boss"
    config = SLAConfig.objects.get(name="Desk SLA")
    assert config.queue == desk["group"]

    refused(
        api.post("/api/v1/sla-configs/", {**SLA, "name": "B", "queue": "Nowhere"}, format="json"),
        "queue",
        "UNKNOWN_QUEUE",
    )
    ladder = [{"after": "4h", "actions": [{"type": "reassign", "user": "ghost@example.com"}]}]
    refused(
        api.post(
            "/api/v1/sla-configs/", {**SLA, "name": "C", "escalation_ladder": ladder}, format="json"
        ),
        "escalation_ladder[0].actions[0].user",
        "UNKNOWN_USER",
    )
    ladder = [{"after": "4h", "actions": [{"type": "reassign", "queue": "Nowhere"}]}]
    refused(
        api.post(
            "/api/v1/sla-configs/", {**SLA, "name": "D", "escalation_ladder": ladder}, format="json"
        ),
        "escalation_ladder[0].actions[0].queue",
        "UNKNOWN_QUEUE",
    )
    assert not SLAConfig.objects.filter(name__in=["B", "C", "D"]).exists()


def test_queues_lists_the_callers_queues_with_counts(
    desk: dict[str, Any], make_user: Any, admin_user: Any
) -> None:
    other = Group.objects.create(name="Elsewhere")
    services.task_create(title="Claim me", queue=desk["group"], routing="claim")
    services.task_create(title="Agent's", assignee=desk["agent"], queue=desk["group"])
    services.task_create(title="Far away", queue=other, routing="claim")

    rows = as_user(desk["agent"]).get("/api/v1/queues/").json()["results"]
    assert [(r["name"], r["is_member"], r["is_manager"]) for r in rows] == [("Desk", True, False)]
    assert (rows[0]["open_count"], rows[0]["claimable_count"], rows[0]["member_count"]) == (2, 1, 2)
    rows = as_user(desk["manager"]).get("/api/v1/queues/").json()["results"]
    assert [(r["name"], r["is_member"], r["is_manager"]) for r in rows] == [("Desk", False, True)]
    staff_rows = as_user(admin_user).get("/api/v1/queues/").json()["results"]
    assert [r["name"] for r in staff_rows] == ["Desk", "Elsewhere"]

    agent = as_user(desk["agent"])
    assert agent.get("/api/v1/queues/Desk/").json()["id"] == desk["group"].pk
    assert agent.get(f"/api/v1/queues/{desk['group'].pk}/").json()["name"] == "Desk"
    hidden = agent.get("/api/v1/queues/Elsewhere/")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "NOT_FOUND"
    refused(agent.get("/api/v1/queues/Nowhere/"), "queue", "UNKNOWN_QUEUE")
    loner = as_user(make_user("loner"))
    assert loner.get("/api/v1/queues/").json()["results"] == []
    assert APIClient().get("/api/v1/queues/").json()["error"]["code"] == "NOT_AUTHENTICATED"


def test_an_agent_reads_the_lifecycle_of_a_task_it_can_see(
    desk: dict[str, Any], make_user: Any
) -> None:
    task = services.task_create(title="Mine", assignee=desk["agent"])
    agent = as_user(desk["agent"])
    response = agent.get(f"/api/v1/lifecycles/{task.lifecycle.slug}/")
    assert response.status_code == 200, response.content
    assert {s["key"] for s in response.json()["states"]} >= {"new", "completed"}
    assert agent.get(f"/api/v1/lifecycles/{task.lifecycle_id}/").status_code == 200
    listed = agent.get("/api/v1/lifecycles/").json()["results"]
    assert [row["slug"] for row in listed] == [task.lifecycle.slug]

    hidden = agent.get("/api/v1/lifecycles/plan/")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "NOT_FOUND"
    write = agent.patch(
        f"/api/v1/lifecycles/{task.lifecycle.slug}/", {"name": "Mine"}, format="json"
    )
    assert write.status_code == 403 and write.json()["error"]["code"] == "PERMISSION_DENIED"
    stranger = as_user(make_user("stranger"))
    gone = stranger.get(f"/api/v1/lifecycles/{task.lifecycle.slug}/")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"
