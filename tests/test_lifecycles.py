"""Lifecycles as data: validation that names what is wrong, the seeded defaults, and a
configurable approval lifecycle driven through the API (draft -> submitted -> approved, or
rejected -> draft): available actions per state, INVALID_TRANSITION, the history.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from automation.models import Event
from tasks_inbox.lifecycles import BUILTIN_DOCUMENTS, lifecycle_issues, lifecycle_save
from tasks_inbox.models import Queue
from workflows.models import Lifecycle

pytestmark = pytest.mark.django_db

APPROVAL: dict[str, Any] = {
    "slug": "approval-test",
    "name": "Approval",
    "states": [
        {"key": "draft", "label": "Draft", "is_initial": True},
        {"key": "submitted", "label": "Submitted"},
        {"key": "approved", "label": "Approved", "is_final": True},
        {"key": "rejected", "label": "Rejected"},
    ],
    "transitions": [
        {
            "action": "submit",
            "from_states": ["draft"],
            "to_state": "submitted",
            "allowed": ["assignee", "creator"],
        },
        {
            "action": "approve",
            "from_states": ["submitted"],
            "to_state": "approved",
            "allowed": ["manager", "staff"],
            "guard": {"field": "task.priority", "operator": "ne", "value": "low"},
        },
        {
            "action": "reject",
            "from_states": ["submitted"],
            "to_state": "rejected",
            "allowed": ["manager", "staff"],
            "required_input": ["reason"],
        },
        {
            "action": "revise",
            "from_states": ["rejected"],
            "to_state": "draft",
            "allowed": ["assignee", "creator"],
        },
    ],
}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def fields_of(response: Any) -> dict[str, list[str]]:
    return response.json()["error"].get("fields", {})


# --- validation -------------------------------------------------------------------------


def test_seeded_lifecycles_exist_and_are_valid() -> None:
    for slug in ("task", "plan"):
        lifecycle = Lifecycle.objects.get(slug=slug)
        from tasks_inbox.lifecycles import lifecycle_document

        document = lifecycle_document(lifecycle)
        assert lifecycle_issues(document) == []
        assert {s["key"] for s in document["states"]} == {
            s["key"] for s in BUILTIN_DOCUMENTS[slug]["states"]
        }
    task = Lifecycle.objects.get(slug="task")
    edges = {(t.action, tuple(t.from_states), t.to_state) for t in task.transitions.all()}
    assert edges == {
        ("start", ("new",), "in_progress"),
        ("complete", ("in_progress",), "completed"),
        ("block", ("new", "in_progress"), "blocked"),
        ("resume", ("blocked",), "in_progress"),
        ("release", ("in_progress",), "new"),
        ("cancel", ("new", "in_progress", "blocked"), "cancelled"),
    }


def test_every_problem_is_named_with_its_path() -> None:
    bad = deepcopy(APPROVAL)
    bad["states"][1]["is_initial"] = True  # two initial states
    bad["states"].append({"key": "draft"})  # duplicate key
    bad["transitions"][1]["to_state"] = "aproved"  # unknown target
    bad["transitions"][2]["from_states"] = ["submited"]  # unknown source
    bad["transitions"].append(
        {"action": "reopen", "from_states": ["approved"], "to_state": "draft"}
    )  # leaves a final state
    bad["transitions"][0]["guard"] = {
        "field": "task.priority",
        "operator": "equals",
        "value": "high",
    }
    bad["transitions"][3]["allowed"] = ["boss"]
    issues = {i.path: i.message for i in lifecycle_issues(bad)}
    assert issues["states"].startswith(
        "exactly one state must be initial (found 2: draft, submitted)"
    )
    assert issues["states[4].key"] == "duplicate state key 'draft'"
    assert issues["transitions[1].to_state"] == "unknown state 'aproved'"
    assert issues["transitions[2].from_states[0]"] == "unknown state 'submited'"
    assert issues["transitions[4].from_states[0]"] == (
        "no transition may leave the final state 'approved'"
    )
    assert issues["transitions[0].guard.operator"].startswith("unknown operator 'equals'")
    assert issues["transitions[3].allowed[0]"].startswith("unknown role 'boss'")


def test_structural_problems() -> None:
    assert {i.path: i.message for i in lifecycle_issues({"slug": "x", "name": "X", "states": []})}[
        "states"
    ] == ("must be a non-empty list of states")
    issues = {
        i.path: i.message
        for i in lifecycle_issues(
            {
                "slug": "Bad Slug",
                "name": "",
                "states": [{"key": "only", "is_initial": True, "is_cancellation": True}],
                "transitions": [
                    {"action": "go", "from_states": [], "to_state": "only"},
                    {"action": "go", "from_states": ["only"], "to_state": "only"},
                ],
                "colour": "red",
            }
        )
    }
    assert issues["slug"].startswith("must be lowercase")
    assert issues["name"].startswith("must be a non-empty string")
    assert issues["colour"] == "unknown key 'colour'"
    assert issues["states"] == "at least one state must be final"
    assert issues["states[0].is_cancellation"].startswith("only a final state")
    assert issues["transitions[0].from_states"] == "must name at least one state"
    assert issues["transitions[1].action"] == "duplicate action 'go'"


def test_a_state_tasks_are_in_cannot_be_removed(make_user: Any) -> None:
    from tasks_inbox.services import task_create

    lifecycle = lifecycle_save(document=APPROVAL)
    task_create(title="In draft", assignee=make_user(), lifecycle=lifecycle)
    shrunk = deepcopy(APPROVAL)
    shrunk["states"][0]["is_initial"] = False
    shrunk["states"][1]["is_initial"] = True
    shrunk["states"] = shrunk["states"][1:]
    shrunk["transitions"] = [
        t
        for t in shrunk["transitions"]
        if "draft" not in t["from_states"] and t["to_state"] != "draft"
    ]
    from tasks_inbox.lifecycles import LifecycleInvalid

    with pytest.raises(LifecycleInvalid) as info:
        lifecycle_save(document=shrunk, lifecycle=lifecycle)
    assert info.value.fields == {"states": ["state 'draft' cannot be removed: tasks are in it"]}


def test_a_missing_builtin_lifecycle_is_recreated(make_user: Any) -> None:
    from tasks_inbox.services import task_create

    Lifecycle.objects.filter(slug="task").delete()
    task = task_create(title="Still works", assignee=make_user())
    assert task.lifecycle.slug == "task" and task.state == "new"


# --- the API ----------------------------------------------------------------------------


def test_invalid_definition_is_refused_with_reasons(api: APIClient) -> None:
    bad = deepcopy(APPROVAL)
    bad["states"][0]["is_initial"] = False
    bad["transitions"][0]["to_state"] = "nowhere"
    response = api.post("/api/v1/lifecycles/", bad, format="json")
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "VALIDATION_ERROR"
    assert body["fields"]["states"] == ["exactly one state must be initial (found 0)"]
    assert body["fields"]["transitions[0].to_state"] == ["unknown state 'nowhere'"]
    assert not Lifecycle.objects.filter(slug="approval-test").exists()
    assert api.post("/api/v1/lifecycles/validate/", bad, format="json").status_code == 400
    assert api.post("/api/v1/lifecycles/validate/", APPROVAL, format="json").json() == {
        "valid": True
    }


def test_lifecycle_crud(api: APIClient, make_user: Any) -> None:
    created = api.post("/api/v1/lifecycles/", APPROVAL, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert [s["key"] for s in body["states"]] == ["draft", "submitted", "approved", "rejected"]
    assert body["transitions"][0]["allowed"] == ["assignee", "creator"]
    assert body["transitions"][2]["required_input"] == ["reason"]
    listed = api.get("/api/v1/lifecycles/").json()["results"]
    assert {"task", "plan", "approval-test"} <= {item["slug"] for item in listed}
    by_slug = api.get("/api/v1/lifecycles/approval-test/").json()
    assert by_slug == api.get(f"/api/v1/lifecycles/{body['id']}/").json()
    renamed = api.patch("/api/v1/lifecycles/approval-test/", {"name": "Approval v2"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Approval v2"
    assert len(renamed.json()["transitions"]) == 4
    duplicate = api.post("/api/v1/lifecycles/", APPROVAL, format="json")
    assert fields_of(duplicate) == {"slug": ["a lifecycle 'approval-test' exists"]}

    from tasks_inbox.services import task_create

    task_create(title="Uses it", assignee=make_user(), lifecycle="approval-test")
    refused = api.delete("/api/v1/lifecycles/approval-test/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "LIFECYCLE_IN_USE"


def test_lifecycle_authoring_needs_staff(make_user: Any) -> None:
    agent = client_for(make_user("agent"))
    # reads are scoped to the lifecycles of the tasks the agent can see: none yet
    listed = agent.get("/api/v1/lifecycles/")
    assert listed.status_code == 200 and listed.json()["results"] == []
    assert agent.post("/api/v1/lifecycles/", APPROVAL, format="json").status_code == 403
    assert APIClient().get("/api/v1/lifecycles/").status_code == 401


def test_approval_lifecycle_through_the_api(api: APIClient, make_user: Any) -> None:
    # Given the lifecycle, an author who is in the Finance queue and its manager
    assert api.post("/api/v1/lifecycles/", APPROVAL, format="json").status_code == 201
    author = make_user("author", groups=("Finance",))
    manager = make_user("manager")
    from django.contrib.auth.models import Group

    queue = Queue.objects.get_or_create(group=Group.objects.get(name="Finance"))[0]
    queue.managers.add(manager)
    as_author, as_manager = client_for(author), client_for(manager)

    # When the author creates a task in that lifecycle
    created = as_author.post(
        "/api/v1/tasks/",
        {
            "title": "Buy a new laptop",
            "lifecycle": "approval-test",
            "priority": "high",
            "queue": queue.group_id,
            "routing": "claim",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    task_id = created.json()["id"]
    assert created.json()["state"] == "draft"

    def actions(client: APIClient) -> list[str]:
        body = client.get(f"/api/v1/tasks/{task_id}/available-actions/").json()
        return [a["action"] for a in body["actions"]]

    def fire(client: APIClient, action: str, **data: Any) -> Any:
        return client.post(
            f"/api/v1/tasks/{task_id}/transition/", {"action": action, "input": data}, format="json"
        )

    # Then each state offers exactly its actions, to the right people
    assert actions(as_author) == ["submit"]
    assert actions(as_manager) == []
    wrong = fire(as_author, "approve")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "INVALID_TRANSITION"
    assert wrong.json()["error"]["current_state"] == "draft"
    assert wrong.json()["error"]["allowed_actions"] == ["submit"]

    assert fire(as_author, "submit").json()["state"] == "submitted"
    assert actions(as_author) == []
    assert actions(as_manager) == ["approve", "reject"]
    denied = fire(as_author, "approve")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    no_reason = fire(as_manager, "reject")
    assert no_reason.status_code == 400
    assert fields_of(no_reason) == {"input.reason": ["this field is required"]}

    rejected = fire(as_manager, "reject", reason="Too expensive")
    assert rejected.json()["state"] == "rejected" and rejected.json()["is_open"] is True
    assert actions(as_author) == ["revise"]
    assert fire(as_author, "revise").json()["state"] == "draft"
    assert fire(as_author, "submit").status_code == 200
    approved = fire(as_manager, "approve")
    assert approved.json()["state"] == "approved"
    assert approved.json()["is_open"] is False and approved.json()["outcome"] == "approved"
    again = fire(as_manager, "reject", reason="late")
    assert again.json()["error"] | {"message": ""} == {
        "code": "INVALID_TRANSITION",
        "message": "",
        "current_state": "approved",
        "allowed_actions": [],
    }

    # And the history lists every step, with actor, time, from, to and input
    history = as_author.get(f"/api/v1/tasks/{task_id}/history/").json()["results"]
    assert [
        (h["action"], h["from_state"], h["to_state"], h["actor"]["username"]) for h in history
    ] == [
        ("create", "", "draft", "author"),
        ("submit", "draft", "submitted", "author"),
        ("reject", "submitted", "rejected", "manager"),
        ("revise", "rejected", "draft", "author"),
        ("submit", "draft", "submitted", "author"),
        ("approve", "submitted", "approved", "manager"),
    ]
    assert history[2]["input"] == {"reason": "Too expensive"}
    assert all(h["at"] for h in history)
    events = list(
        Event.objects.filter(entity_type="task", entity_id=str(task_id))
        .order_by("pk")
        .values_list("type", flat=True)
    )
    assert events.count("task.transitioned") == 5
    assert events[0] == "task.created" and events[-1] == "task.completed"


def test_a_guard_reads_the_task(api: APIClient, make_user: Any) -> None:
    assert api.post("/api/v1/lifecycles/", APPROVAL, format="json").status_code == 201
    author = make_user("author2")
    task = api.post(
        "/api/v1/tasks/",
        {"title": "Cheap", "lifecycle": "approval-test", "priority": "low", "assignee": author.pk},
        format="json",
    ).json()
    client = client_for(author)
    client.post(f"/api/v1/tasks/{task['id']}/transition/", {"action": "submit"}, format="json")
    available = api.get(f"/api/v1/tasks/{task['id']}/available-actions/").json()
    assert [a["action"] for a in available["actions"]] == ["reject"]
    refused = api.post(
        f"/api/v1/tasks/{task['id']}/transition/", {"action": "approve"}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "INVALID_TRANSITION"
    assert "condition" in refused.json()["error"]["message"]


def test_disabled_state_cannot_be_entered(api: APIClient, make_user: Any) -> None:
    document = deepcopy(APPROVAL)
    document["states"][3]["is_enabled"] = False
    assert api.post("/api/v1/lifecycles/", document, format="json").status_code == 201
    task = api.post(
        "/api/v1/tasks/",
        {"title": "T", "lifecycle": "approval-test", "assignee": make_user().pk},
        format="json",
    ).json()
    api.post(f"/api/v1/tasks/{task['id']}/transition/", {"action": "submit"}, format="json")
    available = api.get(f"/api/v1/tasks/{task['id']}/available-actions/").json()["actions"]
    assert [a["action"] for a in available] == ["approve"]
    refused = api.post(
        f"/api/v1/tasks/{task['id']}/transition/",
        {"action": "reject", "input": {"reason": "x"}},
        format="json",
    )
    assert refused.json()["error"]["code"] == "INVALID_TRANSITION"


def test_default_lifecycle_block_release_and_cancel(api: APIClient, make_user: Any) -> None:
    from django.contrib.auth.models import Group

    agent = make_user("agent", groups=("Desk",))
    group = Group.objects.get(name="Desk")
    task = api.post(
        "/api/v1/tasks/", {"title": "Call back", "queue": group.pk}, format="json"
    ).json()
    assert task["assignee"]["username"] == "agent"  # the only member
    client = client_for(agent)
    url = f"/api/v1/tasks/{task['id']}/transition/"
    assert client.post(url, {"action": "start"}, format="json").json()["state"] == "in_progress"
    blocked = client.post(url, {"action": "block"}, format="json")
    assert fields_of(blocked) == {"input.reason": ["this field is required"]}
    assert (
        client.post(url, {"action": "block", "input": {"reason": "waiting"}}, format="json").json()[
            "state"
        ]
        == "blocked"
    )
    assert client.post(url, {"action": "resume"}, format="json").json()["state"] == "in_progress"
    released = client.post(url, {"action": "release"}, format="json").json()
    assert released["state"] == "new" and released["assignee"] is None
    claimed = client.post(f"/api/v1/tasks/{task['id']}/claim/").json()
    assert claimed["state"] == "in_progress" and claimed["assignee"]["username"] == "agent"
    cancelled = client.post(url, {"action": "cancel"}, format="json").json()
    assert cancelled["state"] == "cancelled" and cancelled["outcome"] == "cancelled"
    types = list(
        Event.objects.filter(entity_type="task", entity_id=str(task["id"])).values_list(
            "type", flat=True
        )
    )
    assert "task.cancelled" in types and "task.completed" not in types


# --- the admin --------------------------------------------------------------------------


def test_lifecycles_are_edited_in_the_admin_with_the_same_validation(admin_client: Any) -> None:
    import json

    inline_forms = {
        f"{prefix}-{key}": 0
        for prefix in ("states", "transitions")
        for key in ("TOTAL_FORMS", "INITIAL_FORMS")
    }
    body = {
        "slug": "admin-made",
        "name": "Admin made",
        "description": "",
        **inline_forms,
        "document": json.dumps(
            {"states": APPROVAL["states"], "transitions": APPROVAL["transitions"]}
        ),
    }
    bad = {
        **body,
        "document": json.dumps(
            {
                "states": [{"key": "a"}],
                "transitions": [{"action": "go", "from_states": ["a"], "to_state": "b"}],
            }
        ),
    }
    response = admin_client.post("/admin/workflows/lifecycle/add/", bad)
    assert response.status_code == 200
    html = response.content.decode()
    assert "states: exactly one state must be initial (found 0)" in html
    assert "transitions[0].to_state: unknown state &#x27;b&#x27;" in html
    assert not Lifecycle.objects.filter(slug="admin-made").exists()

    response = admin_client.post("/admin/workflows/lifecycle/add/", body)
    assert response.status_code == 302, response.content.decode()[:2000]
    lifecycle = Lifecycle.objects.get(slug="admin-made")
    assert [s.key for s in lifecycle.states.all()] == ["draft", "submitted", "approved", "rejected"]
    change_url = f"/admin/workflows/lifecycle/{lifecycle.pk}/change/"
    change = admin_client.get(change_url)
    assert change.status_code == 200 and "&quot;approve&quot;" in change.content.decode()

    # Editing: a state and a transition added through the document; a bad edit changes
    # nothing and names the problem.
    edited = {
        "states": [*APPROVAL["states"], {"key": "on_hold", "label": "On hold"}],
        "transitions": [
            *APPROVAL["transitions"],
            {
                "action": "hold",
                "from_states": ["submitted"],
                "to_state": "on_hold",
                "allowed": ["manager"],
            },
        ],
    }
    broken = {
        **edited,
        "transitions": [
            *edited["transitions"],
            {"action": "hold", "from_states": ["draft"], "to_state": "nowhere"},
        ],
    }
    response = admin_client.post(
        change_url, {**body, "name": "Renamed", "document": json.dumps(broken)}
    )
    assert response.status_code == 200
    assert "unknown state &#x27;nowhere&#x27;" in response.content.decode()
    lifecycle.refresh_from_db()
    assert lifecycle.name == "Admin made"
    assert not lifecycle.states.filter(key="on_hold").exists()

    response = admin_client.post(
        change_url, {**body, "name": "Renamed", "document": json.dumps(edited)}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    lifecycle.refresh_from_db()
    assert lifecycle.name == "Renamed"
    assert [s.key for s in lifecycle.states.all()] == [
        "draft",
        "submitted",
        "approved",
        "rejected",
        "on_hold",
    ]
    hold = lifecycle.transitions.get(action="hold")
    assert hold.from_states == ["submitted"] and hold.to_state == "on_hold"
    assert Lifecycle.objects.filter(slug="admin-made").count() == 1


def test_task_and_queue_admin_pages_render(admin_client: Any, make_user: Any) -> None:
    from tasks_inbox.services import task_create

    task = task_create(title="Admin view", assignee=make_user())
    assert admin_client.get("/admin/tasks_inbox/task/").status_code == 200
    page = admin_client.get(f"/admin/tasks_inbox/task/{task.pk}/change/")
    assert page.status_code == 200 and "create" in page.content.decode()
    assert admin_client.get("/admin/tasks_inbox/queue/add/").status_code == 200
