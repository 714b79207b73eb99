"""The visibility matrix: every task endpoint and page, as anonymous, the assignee, another
agent, the queue's manager, another queue's manager and staff.

One rule (``tasks_visible_to``): your own tasks, the unassigned tasks of your queues, every
task of the queues you manage; staff see all. Whatever is outside answers 404.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from automation.models import Export
from automation.services import workflow_execute
from tasks_inbox import services
from tasks_inbox.models import Queue, Task
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db

FORM = {"fields": [{"name": "note", "type": "text"}]}


@pytest.fixture
def world(make_user: Any) -> dict[str, Any]:
    users = {
        "assignee": make_user("assignee", groups=("A",)),
        "agent": make_user("agent", groups=("A",)),
        "manager": make_user("manager"),
        "other_manager": make_user("other_manager"),
        "staff": make_user("staff", staff=True),
        "bee": make_user("bee", groups=("B",)),
    }
    a, b = Group.objects.get(name="A"), Group.objects.get(name="B")
    Queue.objects.create(group=a, routing="claim").managers.add(users["manager"])
    Queue.objects.create(group=b, routing="claim").managers.add(users["other_manager"])
    tasks = {
        "assigned": services.task_create(
            title="assigned", queue=a, assignee=users["assignee"], form=FORM
        ),
        "claimable": services.task_create(title="claimable", queue=a),
        "b_assigned": services.task_create(title="b_assigned", queue=b, assignee=users["bee"]),
        "b_open": services.task_create(title="b_open", queue=b),
        "personal": services.task_create(title="personal", assignee=users["agent"]),
    }
    return {"users": users, "tasks": tasks}


VISIBLE = {
    "assignee": {"assigned", "claimable"},
    "agent": {"claimable", "personal"},
    "manager": {"assigned", "claimable"},
    "other_manager": {"b_assigned", "b_open"},
    "staff": {"assigned", "claimable", "b_assigned", "b_open", "personal"},
}
PAGES = {
    # role: (my tasks, my queues, team)
    "assignee": ({"assigned"}, {"claimable"}, set()),
    "agent": ({"personal"}, {"claimable"}, set()),
    "manager": (set(), set(), {"assigned", "claimable"}),
    "other_manager": (set(), set(), {"b_assigned", "b_open"}),
    "staff": (set(), set(), {"assigned", "claimable", "b_assigned", "b_open"}),
}
# (role, task) pairs where a claim answers 409, not 404: the task is in the role's queue.
CLAIM_CONFLICTS = {("agent", "assigned")}
READS = ["", "available-actions/", "history/"]
WRITES = {
    "transition/": {"action": "cancel"},
    "claim/": {},
    "complete/": {"data": {"note": "x"}},
    "reassign/": {"queue": None, "reason": "x"},
    "escalate/": {"reason": "x"},
}
PAGE_POSTS = {
    "claim/": {},
    "transition/": {"action": "cancel"},
    "complete/": {"note": "x"},
    "notes/": {"note": "hello"},
}


def names_in(body: Any, tasks: dict[str, Task]) -> set[str]:
    by_id = {task.pk: name for name, task in tasks.items()}
    return {by_id[item["id"]] for item in body["results"]}


def rows_in(html: str, tasks: dict[str, Task]) -> set[str]:
    by_id = {task.pk: name for name, task in tasks.items()}
    return {by_id[int(pk)] for pk in re.findall(r'id="task-row-(\d+)"', html)}


def test_anonymous_sees_nothing(world: dict[str, Any]) -> None:
    api, pages = APIClient(), Client()
    assert api.get("/api/v1/tasks/").status_code == 401
    assert api.get("/api/v1/tasks/stats/").status_code == 401
    for task in world["tasks"].values():
        for suffix in READS:
            assert api.get(f"/api/v1/tasks/{task.pk}/{suffix}").status_code == 401
        for suffix, body in WRITES.items():
            assert (
                api.post(f"/api/v1/tasks/{task.pk}/{suffix}", body, format="json").status_code
                == 401
            )
        response = pages.get(f"/inbox/tasks/{task.pk}/")
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        for suffix, data in PAGE_POSTS.items():
            assert pages.post(f"/inbox/tasks/{task.pk}/{suffix}", data).status_code == 302
    for url in ("/inbox/", "/inbox/queues/", "/inbox/team/", "/inbox/notifications/"):
        assert pages.get(url).status_code == 302


@pytest.mark.parametrize("role", list(VISIBLE))
def test_the_api_shows_exactly_the_visible_tasks(world: dict[str, Any], role: str) -> None:
    user, tasks = world["users"][role], world["tasks"]
    api = APIClient()
    api.force_authenticate(user)
    listed = api.get("/api/v1/tasks/?page_size=100")
    assert listed.status_code == 200
    assert names_in(listed.json(), tasks) == VISIBLE[role]
    stats = api.get("/api/v1/tasks/stats/").json()
    assert stats["total"] == len(VISIBLE[role])
    for name, task in tasks.items():
        expected = 200 if name in VISIBLE[role] else 404
        for suffix in READS:
            response = api.get(f"/api/v1/tasks/{task.pk}/{suffix}")
            assert response.status_code == expected, (role, name, suffix)
            if expected == 404:
                assert response.json()["error"]["code"] == "NOT_FOUND"
        if name not in VISIBLE[role]:
            for suffix, body in WRITES.items():
                response = api.post(f"/api/v1/tasks/{task.pk}/{suffix}", body, format="json")
                if suffix == "claim/" and (role, name) in CLAIM_CONFLICTS:
                    # a member of the task's queue who is too late to claim is told so
                    assert response.status_code == 409
                    assert response.json()["error"] == {
                        "code": "CONFLICT",
                        "message": "The task has already been claimed.",
                    }
                    continue
                assert response.status_code == 404, (role, name, suffix, response.content)
    # nothing out of sight was changed by those calls
    assert set(Task.objects.values_list("state", flat=True)) == {"new"}


@pytest.mark.parametrize("role", list(VISIBLE))
def test_the_pages_show_exactly_the_visible_tasks(world: dict[str, Any], role: str) -> None:
    user, tasks = world["users"][role], world["tasks"]
    pages = Client()
    pages.force_login(user)
    mine, queues, team = PAGES[role]
    for url, expected in (("/inbox/", mine), ("/inbox/queues/", queues), ("/inbox/team/", team)):
        response = pages.get(url)
        assert response.status_code == 200
        assert rows_in(response.content.decode(), tasks) == expected, (role, url)
    for name, task in tasks.items():
        response = pages.get(f"/inbox/tasks/{task.pk}/")
        assert response.status_code == (200 if name in VISIBLE[role] else 404), (role, name)
        if name not in VISIBLE[role]:
            for suffix, data in PAGE_POSTS.items():
                response = pages.post(f"/inbox/tasks/{task.pk}/{suffix}", data)
                if suffix == "claim/" and (role, name) in CLAIM_CONFLICTS:
                    assert response.status_code == 302  # back to the inbox, with the message
                    continue
                assert response.status_code == 404, (role, name, suffix)
    assert set(Task.objects.values_list("state", flat=True)) == {"new"}


def test_a_manager_sees_queue_tasks_whoever_holds_them(world: dict[str, Any]) -> None:
    users, tasks = world["users"], world["tasks"]
    api = APIClient()
    api.force_authenticate(users["manager"])
    # the manager hands the assigned task to the other agent; it stays in sight
    moved = api.post(
        f"/api/v1/tasks/{tasks['assigned'].pk}/reassign/",
        {"assignee": users["agent"].pk, "reason": "holiday"},
        format="json",
    )
    assert moved.status_code == 200 and moved.json()["assignee"]["username"] == "agent"
    api.force_authenticate(users["assignee"])
    assert api.get(f"/api/v1/tasks/{tasks['assigned'].pk}/").status_code == 404
    api.force_authenticate(users["agent"])
    assert api.get(f"/api/v1/tasks/{tasks['assigned'].pk}/").status_code == 200


def test_another_agent_cannot_act_on_a_claimable_task_beyond_claiming(
    world: dict[str, Any],
) -> None:
    users, tasks = world["users"], world["tasks"]
    api = APIClient()
    api.force_authenticate(users["agent"])
    task = tasks["claimable"]
    denied = api.post(f"/api/v1/tasks/{task.pk}/transition/", {"action": "cancel"}, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    assert (
        api.post(
            f"/api/v1/tasks/{task.pk}/reassign/", {"assignee": users["agent"].pk}, format="json"
        ).status_code
        == 403
    )
    available = api.get(f"/api/v1/tasks/{task.pk}/available-actions/").json()
    assert {key: available[key] for key in ("state", "actions", "can_claim")} == {
        "state": "new",
        "actions": [],
        "can_claim": True,
    }


@pytest.mark.parametrize("role", list(VISIBLE))
def test_exports_hold_exactly_the_visible_tasks(
    world: dict[str, Any], role: str, drain: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    workflow = workflow_save(
        document={
            "slug": "task-export",
            "name": "Export tasks",
            "triggers": [],
            "steps": [
                {"key": "export", "type": "enqueue_export", "config": {"entity_type": "task"}}
            ],
        }
    )
    run = workflow_execute(workflow_id=workflow.pk, payload={}, actor=world["users"][role])
    drain()
    step = run.action_runs.get()
    assert step.status == "completed", step.error
    export = Export.objects.get(action_run=step)
    with open(tmp_path / export.file.name, newline="", encoding="utf-8") as handle:
        exported = {int(row["id"]) for row in csv.DictReader(handle)}
    by_id = {task.pk: name for name, task in world["tasks"].items()}
    assert {by_id[pk] for pk in exported} == VISIBLE[role]
