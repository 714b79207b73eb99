"""What a state or transition means is declared on the lifecycle, never read from its key.

A lifecycle whose states and actions have other names (``paused`` pauses the SLA clock, a
claim fires ``pick_up``, completing fires ``finish``) behaves as the default one does; the
same names without the declarations mean nothing to the engine. Given / when / then,
through the task services, the API and the SLA sweep, on the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group

from tasks_inbox import services
from tasks_inbox.lifecycle_import import lifecycles_import
from tasks_inbox.lifecycle_stats import lifecycle_stats
from tasks_inbox.lifecycles import lifecycle_document, lifecycle_issues, lifecycle_save
from tasks_inbox.models import Queue, Task
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.sweep import sla_sweep

pytestmark = [pytest.mark.django_db]

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

CASE = {
    "slug": "case",
    "name": "Case",
    "states": [
        {"key": "open", "label": "Open", "is_initial": True},
        {"key": "working", "label": "Working"},
        {"key": "paused", "label": "Paused", "pauses_sla": True},
        {"key": "solved", "label": "Solved", "is_final": True},
        {"key": "dropped", "label": "Dropped", "is_final": True, "is_cancellation": True},
    ],
    "transitions": [
        {"action": "pick_up", "from_states": ["open"], "to_state": "working", "on_claim": True},
        {"action": "hold", "from_states": ["open", "working"], "to_state": "paused"},
        {"action": "go_on", "from_states": ["paused"], "to_state": "working"},
        {"action": "shortcut", "from_states": ["working"], "to_state": "solved"},
        {"action": "finish", "from_states": ["working"], "to_state": "solved", "on_complete": True},
        {"action": "drop", "from_states": ["open", "working", "paused"], "to_state": "dropped"},
    ],
}


@pytest.fixture
def team(make_user: Any) -> dict[str, Any]:
    agent = make_user("agent", groups=("Cases",))
    group = Group.objects.get(name="Cases")
    Queue.objects.create(group=group, routing="claim")
    return {"agent": agent, "queue": group}


def case_task(team: dict[str, Any], lifecycle: str = "case", **kwargs: Any) -> Task:
    values = {"title": "Broken boiler", "task_type": "case", "queue": team["queue"]}
    return services.task_create(lifecycle=lifecycle, **values, **kwargs)


def test_a_claim_fires_the_transition_the_lifecycle_marks(team: dict[str, Any]) -> None:
    lifecycle_save(document=CASE)
    task = case_task(team)
    claimed = services.task_claim(task_id=task.pk, actor=team["agent"])
    assert claimed.state == "working" and claimed.assignee == team["agent"]
    row = claimed.history.order_by("-id").first()
    assert (row.action, row.from_state, row.to_state) == ("claim", "open", "working")
    stats = lifecycle_stats(
        lifecycle=claimed.lifecycle,
        since=claimed.created_at - timedelta(minutes=1),
        until=claimed.created_at + timedelta(days=1),
    )
    assert {a["action"]: a["fired"] for a in stats["actions"]}["pick_up"] == 1


def test_without_a_declaration_a_claim_only_assigns(team: dict[str, Any]) -> None:
    document = {
        **CASE,
        "transitions": [{**t, "on_claim": False} for t in CASE["transitions"]],
    }
    lifecycle_save(document=document)
    task = case_task(team)
    claimed = services.task_claim(task_id=task.pk, actor=team["agent"])
    assert claimed.state == "open" and claimed.assignee == team["agent"]


def test_completing_fires_the_marked_transition_not_the_first(team: dict[str, Any]) -> None:
    lifecycle_save(document=CASE)
    task = case_task(team, assignee=team["agent"])
    services.task_transition(task_id=task.pk, action="pick_up", actor=team["agent"])
    done = services.task_complete(task_id=task.pk, actor=team["agent"])
    assert done.state == "solved" and not done.is_open
    assert done.history.order_by("-id").first().action == "finish"


def test_the_sla_clock_pauses_in_the_state_that_says_so(team: dict[str, Any]) -> None:
    lifecycle_save(document=CASE)
    agent = team["agent"]
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        sla_config_save(
            document={"name": "Cases", "queue": "Cases", "task_type": "case", "target": "1h"}
        )
        task = case_task(team, assignee=agent)
        clock.shift(timedelta(minutes=20))
        services.task_transition(task_id=task.pk, action="hold", actor=agent)
        task.refresh_from_db()
        assert task.sla_paused_at == MONDAY_9 + timedelta(minutes=20)
        assert task.sla_due_at is None
        clock.shift(timedelta(hours=5))
        assert sla_sweep().fired == 0  # paused: no breach
        services.task_transition(task_id=task.pk, action="go_on", actor=agent)
        task.refresh_from_db()
        assert task.sla_paused_at is None
        assert task.sla_due_at == MONDAY_9 + timedelta(hours=5, minutes=60)


def test_a_state_named_blocked_pauses_nothing_unless_declared(team: dict[str, Any]) -> None:
    document = {
        **CASE,
        "states": [
            {**s, "key": "blocked", "pauses_sla": False} if s["key"] == "paused" else s
            for s in CASE["states"]
        ],
        "transitions": [
            {
                **t,
                "from_states": ["blocked" if k == "paused" else k for k in t["from_states"]],
                "to_state": "blocked" if t["to_state"] == "paused" else t["to_state"],
            }
            for t in CASE["transitions"]
        ],
    }
    lifecycle_save(document=document)
    agent = team["agent"]
    with time_machine.travel(MONDAY_9, tick=False):
        sla_config_save(
            document={"name": "Cases", "queue": "Cases", "task_type": "case", "target": "1h"}
        )
        task = case_task(team, assignee=agent)
        services.task_transition(task_id=task.pk, action="hold", actor=agent)
        task.refresh_from_db()
        assert task.state == "blocked"
        assert task.sla_paused_at is None and task.sla_due_at == MONDAY_9 + timedelta(hours=1)


def test_the_declarations_are_validated() -> None:
    document = {
        **CASE,
        "states": [{**CASE["states"][0], "pauses_sla": "yes"}, *CASE["states"][1:]],
        "transitions": [
            *CASE["transitions"],
            {"action": "grab", "from_states": ["open"], "to_state": "working", "on_claim": True},
            {
                "action": "quit",
                "from_states": ["paused"],
                "to_state": "dropped",
                "on_complete": True,
            },
        ],
    }
    issues = {issue.path: issue.message for issue in lifecycle_issues(document)}
    assert issues["states[0].pauses_sla"] == "must be true or false"
    assert issues["transitions[6].on_claim"] == "a claim from 'open' already fires 'pick_up'"
    assert issues["transitions[7].on_complete"] == (
        "only a transition into a final, non-cancelling state"
    )


def test_the_declarations_round_trip_through_the_document_and_the_import() -> None:
    plain = {
        "name": "Case",
        "slug": "case",
        "states": [
            {"id": "open", "is_initial": True},
            {"id": "paused", "pauses_sla": True},
            {"id": "solved", "is_final": True},
        ],
        "actions": [
            {"id": "pick_up", "from_states": ["open"], "to_state": "paused", "on_claim": True},
            {"id": "finish", "from_states": ["paused"], "to_state": "solved", "on_complete": True},
        ],
    }
    (imported,) = lifecycles_import(data=plain)
    document = lifecycle_document(imported.lifecycle)
    assert [s["pauses_sla"] for s in document["states"]] == [False, True, False]
    assert [(t["on_claim"], t["on_complete"]) for t in document["transitions"]] == [
        (True, False),
        (False, True),
    ]


def test_the_default_lifecycle_declares_what_the_engine_used_to_assume() -> None:
    from tasks_inbox.lifecycles import lifecycle_get

    document = lifecycle_document(lifecycle_get())
    assert [s["key"] for s in document["states"] if s["pauses_sla"]] == ["blocked"]
    assert [t["action"] for t in document["transitions"] if t["on_claim"]] == ["start"]
    assert [t["action"] for t in document["transitions"] if t["on_complete"]] == ["complete"]
