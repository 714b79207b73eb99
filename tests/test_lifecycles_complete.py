"""Lifecycles as complete as a dedicated state-machine service: actions that can be
disabled (ACTION_DISABLED, never offered), descriptions on states and actions, the current
state and available actions in a task's detail, importing this project's documents and the
plain state-machine shape (all or nothing, every problem at its path), and the figures of a
lifecycle (tasks per state, actions fired, median time in each state) read from the history.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks_inbox.errors import ActionDisabled
from tasks_inbox.lifecycle_import import lifecycles_import
from tasks_inbox.lifecycles import LifecycleInvalid, lifecycle_issues, lifecycle_save
from tasks_inbox.models import Task, TaskHistory
from tasks_inbox.services import task_create, task_transition
from workflows.models import Lifecycle

pytestmark = pytest.mark.django_db

REVIEW: dict[str, Any] = {
    "slug": "review",
    "name": "Review",
    "states": [
        {
            "key": "open",
            "label": "Open",
            "is_initial": True,
            "description": "Waiting for a reviewer",
        },
        {"key": "reviewing", "label": "Reviewing", "description": "Someone is on it"},
        {"key": "done", "label": "Done", "is_final": True},
        {"key": "dropped", "label": "Dropped", "is_final": True, "is_cancellation": True},
    ],
    "transitions": [
        {
            "action": "take",
            "label": "Take",
            "from_states": ["open"],
            "to_state": "reviewing",
            "description": "Start the review",
        },
        {
            "action": "skip",
            "label": "Skip",
            "from_states": ["open"],
            "to_state": "done",
            "is_enabled": False,
            "description": "Accept without a review",
        },
        {
            "action": "approve",
            "label": "Approve",
            "from_states": ["reviewing"],
            "to_state": "done",
            "description": "The work is accepted",
        },
        {
            "action": "drop",
            "label": "Drop",
            "from_states": ["open", "reviewing"],
            "to_state": "dropped",
        },
    ],
}

PLAIN: dict[str, Any] = {
    "name": "Purchase request",
    "states": [
        {
            "id": "draft",
            "name": "Draft",
            "is_initial": True,
            "is_final": False,
            "enabled": True,
            "description": "Being written",
        },
        {
            "id": "submitted",
            "name": "Submitted",
            "is_initial": False,
            "is_final": False,
            "enabled": True,
            "description": "Waiting for approval",
        },
        {
            "id": "approved",
            "name": "Approved",
            "is_initial": False,
            "is_final": True,
            "enabled": True,
            "description": "",
        },
        {
            "id": "rejected",
            "name": "Rejected",
            "is_initial": False,
            "is_final": True,
            "enabled": True,
        },
    ],
    "actions": [
        {
            "id": "submit",
            "name": "Submit",
            "enabled": True,
            "from_states": ["draft"],
            "to_state": "submitted",
            "description": "Send it for approval",
        },
        {
            "id": "approve",
            "name": "Approve",
            "enabled": True,
            "from_states": ["submitted"],
            "to_state": "approved",
            "description": "Accept the purchase",
        },
        {
            "id": "reject",
            "name": "Reject",
            "enabled": False,
            "from_states": ["submitted"],
            "to_state": "rejected",
            "description": "Refuse the purchase",
        },
    ],
}


def client_for(user: Any) -> APIClient:
    client = APIClient()
    token = Token.objects.get_or_create(user=user)[0]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def page_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def buttons(html: str) -> dict[str, str]:
    """The transition buttons of a task page: action -> the button tag."""
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'<button type="submit" data-action="([a-z_]+)"[^>]*>', html)
    }


def write_json(tmp_path: Path, data: Any, name: str = "lifecycles.json") -> Path:
    target = tmp_path / name
    target.write_text(json.dumps(data), encoding="utf-8")
    return target


# --- disabled actions -------------------------------------------------------------------


def test_a_disabled_action_is_refused_with_its_own_code_and_never_offered(
    api: APIClient, make_user: Any
) -> None:
    # Given the review lifecycle, whose 'skip' action is disabled, and a task in 'open'
    lifecycle_save(document=REVIEW)
    agent = make_user("agent")
    created = api.post(
        "/api/v1/tasks/",
        {"title": "Check the invoice", "lifecycle": "review", "assignee": agent.pk},
        format="json",
    )
    assert created.status_code == 201, created.content
    task_id = created.json()["id"]
    as_agent = client_for(agent)

    # Then the API offers the enabled actions only and lists 'skip' as unavailable
    available = as_agent.get(f"/api/v1/tasks/{task_id}/available-actions/").json()
    assert [a["action"] for a in available["actions"]] == ["take", "drop"]
    assert available["unavailable_actions"] == [
        {
            "action": "skip",
            "label": "Skip",
            "description": "Accept without a review",
            "reason": "disabled",
        }
    ]
    detail = as_agent.get(f"/api/v1/tasks/{task_id}/").json()
    assert [a["action"] for a in detail["available_actions"]] == ["take", "drop"]
    assert [a["action"] for a in detail["unavailable_actions"]] == ["skip"]

    # And the task page has no 'skip' button (but has the others, titled by description)
    html = page_client(agent).get(f"/inbox/tasks/{task_id}/").content.decode()
    shown = buttons(html)
    assert set(shown) == {"take", "drop"}
    assert 'title="Start the review"' in shown["take"]
    assert "title=" not in shown["drop"]

    # When the agent fires it anyway, through the API: ACTION_DISABLED, not INVALID_TRANSITION
    refused = as_agent.post(
        f"/api/v1/tasks/{task_id}/transition/", {"action": "skip"}, format="json"
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "ACTION_DISABLED"
    assert error["action"] == "skip" and error["current_state"] == "open"
    assert error["allowed_actions"] == ["take", "drop"]
    unknown = as_agent.post(
        f"/api/v1/tasks/{task_id}/transition/", {"action": "nope"}, format="json"
    )
    assert unknown.json()["error"]["code"] == "INVALID_TRANSITION"

    # ... through the page's form, or as a workflow (the system): refused too
    posted = page_client(agent).post(
        f"/inbox/tasks/{task_id}/transition/", {"action": "skip"}, follow=True
    )
    assert "The action &#x27;skip&#x27; of the &#x27;review&#x27; lifecycle is disabled." in (
        posted.content.decode()
    )
    with pytest.raises(ActionDisabled) as info:
        task_transition(task_id=task_id, action="skip", actor=None)
    assert info.value.code == "ACTION_DISABLED"
    task = Task.objects.get(pk=task_id)
    assert task.state == "open" and task.is_open
    assert list(task.history.values_list("action", flat=True)) == ["create"]

    # When the action is enabled again, it is offered and fires
    enabled = deepcopy(REVIEW)
    enabled["transitions"][1]["is_enabled"] = True
    lifecycle_save(document=enabled, lifecycle=Lifecycle.objects.get(slug="review"))
    available = as_agent.get(f"/api/v1/tasks/{task_id}/available-actions/").json()
    assert [a["action"] for a in available["actions"]] == ["take", "skip", "drop"]
    assert available["unavailable_actions"] == []
    assert "skip" in buttons(page_client(agent).get(f"/inbox/tasks/{task_id}/").content.decode())
    fired = as_agent.post(f"/api/v1/tasks/{task_id}/transition/", {"action": "skip"}, format="json")
    assert fired.status_code == 200 and fired.json()["state"] == "done"


def test_completing_through_a_disabled_action_is_refused(api: APIClient, make_user: Any) -> None:
    document = deepcopy(REVIEW)
    document["transitions"][2]["is_enabled"] = False  # approve
    lifecycle_save(document=document)
    agent = make_user("agent")
    task = task_create(title="T", lifecycle="review", assignee=agent)
    as_agent = client_for(agent)
    as_agent.post(f"/api/v1/tasks/{task.pk}/transition/", {"action": "take"}, format="json")
    refused = as_agent.post(f"/api/v1/tasks/{task.pk}/complete/", {}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "ACTION_DISABLED"
    assert refused.json()["error"]["action"] == "approve"
    assert Task.objects.get(pk=task.pk).state == "reviewing"


# --- descriptions and the task's detail -------------------------------------------------


def test_descriptions_in_the_api_the_admin_and_validation(
    api: APIClient, admin_client: Any
) -> None:
    created = api.post("/api/v1/lifecycles/", REVIEW, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["states"][0]["description"] == "Waiting for a reviewer"
    assert body["states"][2]["description"] == ""
    assert body["transitions"][1]["description"] == "Accept without a review"
    assert [t["is_enabled"] for t in body["transitions"]] == [True, False, True, True]

    change = admin_client.get(f"/admin/workflows/lifecycle/{body['id']}/change/")
    html = change.content.decode()
    assert change.status_code == 200
    assert "Waiting for a reviewer" in html and "Accept without a review" in html
    assert "Skip <code>skip</code> (disabled)" in html  # the figures list it as disabled

    bad = deepcopy(REVIEW)
    bad["states"][1]["description"] = 7
    bad["transitions"][0]["is_enabled"] = "yes"
    issues = {i.path: i.message for i in lifecycle_issues(bad)}
    assert issues["states[1].description"].startswith("must be a string")
    assert issues["transitions[0].is_enabled"] == "must be true or false"


def test_the_detail_carries_the_current_state_and_the_available_actions(make_user: Any) -> None:
    # Given a lifecycle where only the assignee may take a task, and a queue's manager
    document = deepcopy(REVIEW)
    document["transitions"][0]["allowed"] = ["assignee"]
    lifecycle_save(document=document)
    agent, manager = make_user("agent", groups=("Desk",)), make_user("lead")
    from django.contrib.auth.models import Group

    from tasks_inbox.models import Queue

    desk = Group.objects.get(name="Desk")
    Queue.objects.get_or_create(group=desk)[0].managers.add(manager)
    task = task_create(title="T", lifecycle="review", assignee=agent, queue=desk)

    # Then the detail has the current state and the caller's actions, as available-actions/
    detail = client_for(agent).get(f"/api/v1/tasks/{task.pk}/").json()
    assert detail["state"] == "open"
    assert detail["current_state"] == {
        "key": "open",
        "label": "Open",
        "description": "Waiting for a reviewer",
        "is_final": False,
    }
    assert detail["available_actions"] == [
        {
            "action": "take",
            "label": "Take",
            "description": "Start the review",
            "to_state": "reviewing",
            "required_input": [],
            "completes": False,
            "cancels": False,
        },
        {
            "action": "drop",
            "label": "Drop",
            "description": "",
            "to_state": "dropped",
            "required_input": [],
            "completes": False,
            "cancels": True,
        },
    ]
    listed = client_for(agent).get(f"/api/v1/tasks/{task.pk}/available-actions/").json()
    assert listed["actions"] == detail["available_actions"]
    assert listed["current_state"] == detail["current_state"]
    as_manager = client_for(manager).get(f"/api/v1/tasks/{task.pk}/").json()
    assert [a["action"] for a in as_manager["available_actions"]] == ["drop"]

    # After a transition, the answer is the new detail: state and actions moved on
    moved = (
        client_for(agent)
        .post(f"/api/v1/tasks/{task.pk}/transition/", {"action": "take"}, format="json")
        .json()
    )
    assert moved["current_state"]["key"] == "reviewing"
    assert [a["action"] for a in moved["available_actions"]] == ["approve", "drop"]
    done = (
        client_for(agent)
        .post(f"/api/v1/tasks/{task.pk}/transition/", {"action": "approve"}, format="json")
        .json()
    )
    assert done["current_state"] == {
        "key": "done",
        "label": "Done",
        "description": "",
        "is_final": True,
    }
    assert done["available_actions"] == [] and done["unavailable_actions"] == []


# --- import -----------------------------------------------------------------------------


def test_a_bad_plain_document_is_refused_with_each_path_and_nothing_is_saved(
    tmp_path: Path,
) -> None:
    bad = deepcopy(PLAIN)
    bad["states"][1]["is_initial"] = True  # two initial states
    bad["actions"][1]["id"] = "submit"  # a duplicate action id
    bad["actions"][2]["to_state"] = "archived"  # an unknown to_state
    before = set(Lifecycle.objects.values_list("slug", flat=True))

    with pytest.raises(CommandError) as info:
        call_command("import_lifecycles", str(write_json(tmp_path, bad)))
    assert str(info.value).splitlines() == [
        "nothing imported:",
        "states: exactly one state must be initial (found 2: draft, submitted)",
        "actions[1].id: duplicate action 'submit'",
        "actions[2].to_state: unknown state 'archived'",
    ]
    assert set(Lifecycle.objects.values_list("slug", flat=True)) == before

    # In a list, a valid document next to the bad one is not saved either (one transaction)
    other = deepcopy(PLAIN)
    other["name"] = "Other request"
    with pytest.raises(LifecycleInvalid) as refused:
        lifecycles_import(data=[other, bad])
    assert refused.value.fields == {
        "[1].states": ["exactly one state must be initial (found 2: draft, submitted)"],
        "[1].actions[1].id": ["duplicate action 'submit'"],
        "[1].actions[2].to_state": ["unknown state 'archived'"],
    }
    assert set(Lifecycle.objects.values_list("slug", flat=True)) == before

    # The plain shape's own mistakes: unknown keys, named where they are
    odd = deepcopy(PLAIN)
    odd["states"][0]["key"] = "draft"
    odd["actions"][0]["target"] = "submitted"
    odd["colour"] = "red"
    with pytest.raises(LifecycleInvalid) as strange:
        lifecycles_import(data=odd)
    assert strange.value.fields == {
        "colour": ["unknown key 'colour'"],
        "states[0].key": ["unknown key 'key'"],
        "actions[0].target": ["unknown key 'target'"],
    }


def test_a_valid_plain_document_is_imported_and_usable_at_once(
    tmp_path: Path, make_user: Any
) -> None:
    # A dry run validates and keeps nothing
    out = tmp_path / "dry.txt"
    with out.open("w") as stream:
        call_command(
            "import_lifecycles", str(write_json(tmp_path, PLAIN)), "--dry-run", stdout=stream
        )
    assert out.read_text().splitlines() == [
        "purchase-request: created (4 states, 3 actions)",
        "1 lifecycle(s) are valid; nothing was saved (--dry-run)",
    ]
    assert not Lifecycle.objects.filter(slug="purchase-request").exists()

    # When the plain document is imported with the command
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        call_command("import_lifecycles", str(write_json(tmp_path, PLAIN)), stdout=stream)
    assert out.read_text().strip() == "purchase-request: created (4 states, 3 actions)"

    # Then it is a lifecycle like any other
    lifecycle = Lifecycle.objects.get(slug="purchase-request")
    assert lifecycle.name == "Purchase request"
    states = {s.key: s for s in lifecycle.states.all()}
    assert states["draft"].is_initial and states["draft"].description == "Being written"
    assert states["approved"].is_final and states["rejected"].is_final
    transitions = {t.action: t for t in lifecycle.transitions.all()}
    assert transitions["submit"].label == "Submit"
    assert transitions["submit"].description == "Send it for approval"
    assert transitions["reject"].is_enabled is False

    # And a task can be created on it and driven at once
    author = make_user("author")
    client = client_for(author)
    created = client.post(
        "/api/v1/tasks/", {"title": "A new laptop", "lifecycle": "purchase-request"}, format="json"
    )
    assert created.status_code == 201, created.content
    task = created.json()
    assert task["current_state"]["label"] == "Draft"
    submitted = client.post(
        f"/api/v1/tasks/{task['id']}/transition/", {"action": "submit"}, format="json"
    )
    assert submitted.status_code == 200 and submitted.json()["state"] == "submitted"
    assert [a["action"] for a in submitted.json()["available_actions"]] == ["approve"]
    assert submitted.json()["unavailable_actions"][0]["action"] == "reject"
    rejected = client.post(
        f"/api/v1/tasks/{task['id']}/transition/", {"action": "reject"}, format="json"
    )
    assert rejected.json()["error"]["code"] == "ACTION_DISABLED"

    # Importing again replaces it; this project's own document imports the same way
    renamed = {
        **deepcopy(PLAIN),
        "name": "Purchase request",
        "slug": "purchase-request",
        "description": "Buying things",
    }
    renamed["actions"][2]["enabled"] = True
    native = {**deepcopy(REVIEW), "slug": "review-imported"}
    imported = lifecycles_import(data=[renamed, native])
    assert [(i.lifecycle.slug, i.created) for i in imported] == [
        ("purchase-request", False),
        ("review-imported", True),
    ]
    lifecycle.refresh_from_db()
    assert lifecycle.description == "Buying things"
    assert lifecycle.transitions.get(action="reject").is_enabled is True
    assert (
        Lifecycle.objects.get(slug="review-imported").transitions.get(action="skip").is_enabled
        is False
    )


def test_the_admin_imports_from_the_changelist(admin_client: Any, tmp_path: Path) -> None:
    changelist = admin_client.get("/admin/workflows/lifecycle/").content.decode()
    assert 'action="/admin/workflows/lifecycle/import/"' in changelist
    assert 'type="file" name="file"' in changelist

    bad = deepcopy(PLAIN)
    bad["states"][1]["is_initial"] = True
    bad["actions"][1]["id"] = "submit"
    bad["actions"][2]["to_state"] = "archived"
    with write_json(tmp_path, bad).open("rb") as upload:
        response = admin_client.post("/admin/workflows/lifecycle/import/", {"file": upload})
    assert response.status_code == 200
    problems = re.search(
        r'<div class="errornote" id="import-problems">(.*?)</div>', response.content.decode(), re.S
    )
    assert problems is not None
    assert re.findall(r"<li>(.*?)</li>", problems.group(1)) == [
        "states: exactly one state must be initial (found 2: draft, submitted)",
        "actions[1].id: duplicate action &#x27;submit&#x27;",
        "actions[2].to_state: unknown state &#x27;archived&#x27;",
    ]
    assert not Lifecycle.objects.filter(slug="purchase-request").exists()

    with write_json(tmp_path, PLAIN).open("rb") as upload:
        response = admin_client.post(
            "/admin/workflows/lifecycle/import/", {"file": upload}, follow=True
        )
    assert response.redirect_chain[-1][0] == "/admin/workflows/lifecycle/"
    assert "Lifecycle &#x27;purchase-request&#x27; created." in response.content.decode()
    assert Lifecycle.objects.get(slug="purchase-request").states.count() == 4

    pasted = admin_client.post("/admin/workflows/lifecycle/import/", {"text": "{not json"})
    assert "Not JSON" in pasted.content.decode()


# --- figures ----------------------------------------------------------------------------


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _at(moment: datetime, call: Any, **kwargs: Any) -> Any:
    with time_machine.travel(moment, tick=False):
        return call(**kwargs)


def _oracle(lifecycle: Lifecycle, since: datetime, until: datetime) -> dict[str, Any]:
    """The figures computed here from the history rows, one task at a time."""
    rows = list(
        TaskHistory.objects.filter(task__lifecycle=lifecycle).order_by(
            "task_id", "created_at", "id"
        )
    )
    fired: dict[str, int] = {}
    stays: dict[str, list[float]] = {}
    by_task: dict[int, list[TaskHistory]] = {}
    for row in rows:
        by_task.setdefault(row.task_id, []).append(row)
        if row.from_state and since <= row.created_at < until:
            fired[row.action] = fired.get(row.action, 0) + 1
    for history in by_task.values():
        changes = [r for r in history if r.from_state != r.to_state]
        for entered, left in itertools.pairwise(changes):
            if since <= left.created_at < until:
                stays.setdefault(entered.to_state, []).append(
                    (left.created_at - entered.created_at).total_seconds()
                )
    per_state: dict[str, int] = {}
    for state in Task.objects.filter(lifecycle=lifecycle).values_list("state", flat=True):
        per_state[state] = per_state.get(state, 0) + 1
    return {
        "fired": fired,
        "per_state": per_state,
        "medians": {k: statistics.median(v) for k, v in stays.items()},
        "stays": {k: len(v) for k, v in stays.items()},
    }


def test_stats_equal_the_figures_of_the_history(
    api: APIClient, make_user: Any, admin_client: Any
) -> None:
    # Given tasks that moved at known times (the clock frozen at each step)
    lifecycle = lifecycle_save(document=REVIEW)
    agent = make_user("agent")
    hour = timedelta(hours=1)

    def create(moment: datetime, title: str) -> int:
        return _at(moment, task_create, title=title, lifecycle=lifecycle, assignee=agent).pk

    def fire(moment: datetime, task_id: int, action: str) -> None:
        _at(moment, task_transition, task_id=task_id, action=action, actor=agent)

    old = create(T0 - timedelta(days=40), "old")  # before the 30-day window
    fire(T0 - timedelta(days=40) + 5 * hour, old, "take")  # ... and still under review
    a = create(T0, "a")
    fire(T0 + hour, a, "take")  # open 1 h
    fire(T0 + 3 * hour, a, "approve")  # reviewing 2 h
    b = create(T0 + hour / 2, "b")
    fire(T0 + 2.5 * hour, b, "take")  # open 2 h
    fire(T0 + 4 * hour, b, "drop")  # reviewing 1.5 h
    c = create(T0 + 5 * hour, "c")
    fire(T0 + 7.25 * hour, c, "take")  # open 2.25 h
    create(T0 + 6 * hour, "d")  # still open

    # When the figures are asked for a day later (default window: 30 days)
    now = T0 + timedelta(days=1)
    with time_machine.travel(now, tick=False):
        response = api.get(f"/api/v1/lifecycles/{lifecycle.pk}/stats/")
        by_slug = api.get("/api/v1/lifecycles/review/stats/?days=30")
    assert response.status_code == 200, response.content
    stats = response.json()
    assert by_slug.json() == stats

    # Then they equal what the history says
    expected = _oracle(lifecycle, now - timedelta(days=30), now)
    states = {s["key"]: s for s in stats["states"]}
    actions = {a["action"]: a["fired"] for a in stats["actions"]}
    assert {k: s["tasks"] for k, s in states.items() if s["tasks"]} == expected["per_state"]
    assert {k: n for k, n in actions.items() if n} == expected["fired"]
    assert {
        k: s["median_seconds"] for k, s in states.items() if s["median_seconds"] is not None
    } == expected["medians"]
    assert {k: s["stays"] for k, s in states.items() if s["stays"]} == expected["stays"]
    # ... which are, written out:
    assert expected["per_state"] == {"open": 1, "reviewing": 2, "done": 1, "dropped": 1}
    assert expected["fired"] == {"take": 3, "approve": 1, "drop": 1}
    assert expected["medians"] == {"open": 2 * 3600, "reviewing": 1.75 * 3600}
    assert actions["skip"] == 0 and states["done"]["median_seconds"] is None
    assert stats["tasks"] == 5 and stats["transitions_fired"] == 5

    # A window from T0 + 2 h: only what happened after it
    since = T0 + 2 * hour
    with time_machine.travel(now, tick=False):
        windowed = api.get(
            f"/api/v1/lifecycles/{lifecycle.pk}/stats/", {"since": since.isoformat()}
        ).json()
    expected = _oracle(lifecycle, since, now)
    assert (
        {a["action"]: a["fired"] for a in windowed["actions"] if a["fired"]}
        == (expected["fired"])
        == {"take": 2, "approve": 1, "drop": 1}
    )
    assert (
        {
            s["key"]: s["median_seconds"]
            for s in windowed["states"]
            if s["median_seconds"] is not None
        }
        == expected["medians"]
        == {"open": 2.125 * 3600, "reviewing": 1.75 * 3600}
    )

    # Bad windows are refused, naming the parameter
    for query, field in (
        ({"days": "0"}, "days"),
        ({"days": "x"}, "days"),
        ({"days": "\u00b2"}, "days"),
        ({"days": "99999"}, "days"),
        ({"since": "yesterday"}, "since"),
        ({"since": since.isoformat(), "days": "3"}, "days"),
    ):
        refused = api.get(f"/api/v1/lifecycles/{lifecycle.pk}/stats/", query)
        assert refused.status_code == 400, query
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
        assert field in refused.json()["error"]["fields"], query
    assert client_for(agent).get(f"/api/v1/lifecycles/{lifecycle.pk}/stats/").status_code == 403

    # And the lifecycle's admin page shows the same figures
    with time_machine.travel(now, tick=False):
        page = admin_client.get(f"/admin/workflows/lifecycle/{lifecycle.pk}/change/")
    html = page.content.decode()
    open_row = re.search(r'<tr data-state="open">(.*?)</tr>', html, re.S)
    assert open_row is not None
    assert re.findall(r"<td>(.*?)</td>", open_row.group(1))[1:] == ["1", "3", "2:00:00"]
    take_row = re.search(r'<tr data-action="take">(.*?)</tr>', html, re.S)
    assert take_row is not None and take_row.group(1).endswith("<td>3</td>")
