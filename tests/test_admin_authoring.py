"""Authoring in the admin: inline validation with the DSL's messages, simulate, publish,
read-only runs; schedules raising events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from automation.models import Event, Run
from automation.tasks import emit_scheduled
from crm.demo import QUALIFY_HIGH_VALUE_LEADS
from workflows.models import Workflow
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


def formset_data(
    workflow: Workflow | None, trigger: dict[str, Any], steps: list[dict[str, Any]]
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Admin made",
        "slug": "admin-made",
        "description": "",
        "is_active": "on",
        "triggers-TOTAL_FORMS": "1",
        "triggers-INITIAL_FORMS": "0",
        "triggers-MIN_NUM_FORMS": "0",
        "triggers-MAX_NUM_FORMS": "1000",
        "triggers-0-event_type": trigger["event_type"],
        "triggers-0-conditions": json.dumps(trigger.get("conditions")),
        "triggers-0-priority": "0",
        "triggers-0-is_active": "on",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for i, step in enumerate(steps):
        data.update(
            {
                f"steps-{i}-key": step["key"],
                f"steps-{i}-type": step["type"],
                f"steps-{i}-config": json.dumps(step["config"]),
                f"steps-{i}-conditions": "null",
                f"steps-{i}-after": json.dumps(step.get("after")),
                f"steps-{i}-retry": "null",
                f"steps-{i}-timeout_seconds": "",
                f"steps-{i}-position": str(i),
            }
        )
    return data


NOTE_STEP = {
    "key": "note",
    "type": "add_note",
    "config": {
        "entity_type": "lead",
        "entity_id": "{{lead.id}}",
        "note": "hi {{lead.company_name}}",
    },
}


def test_admin_creates_and_publishes_a_workflow(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    data = formset_data(
        None,
        {
            "event_type": "lead.created",
            "conditions": {"field": "budget", "operator": "gte", "value": 10},
        },
        [NOTE_STEP],
    )
    response = client.post("/admin/workflows/workflow/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    workflow = Workflow.objects.get(slug="admin-made")
    assert workflow.published_version is None and workflow.has_draft
    response = client.post(f"/admin/workflows/workflow/{workflow.pk}/publish/")
    assert response.status_code == 302
    workflow.refresh_from_db()
    assert workflow.published_version.number == 1
    assert workflow.published_version.definition["steps"][0]["key"] == "note"


def test_admin_refuses_a_bad_condition_with_the_json_path(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    data = formset_data(
        None,
        {
            "event_type": "lead.created",
            "conditions": {"field": "budget", "operator": "equals", "value": 10},
        },
        [NOTE_STEP],
    )
    response = client.post("/admin/workflows/workflow/add/", data)
    assert response.status_code == 200
    assert "trigger.conditions.operator: unknown operator &#x27;equals&#x27;" in (
        response.content.decode()
    )
    assert not Workflow.objects.exists()


def test_admin_refuses_a_cycle(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    steps = [{**NOTE_STEP, "key": "a", "after": ["b"]}, {**NOTE_STEP, "key": "b", "after": ["a"]}]
    response = client.post(
        "/admin/workflows/workflow/add/", formset_data(None, {"event_type": "lead.created"}, steps)
    )
    assert response.status_code == 200
    assert "cycle" in response.content.decode()
    assert not Workflow.objects.exists()


def test_admin_simulate_and_raw_pages(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    workflow = workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    page = client.get(f"/admin/workflows/workflow/{workflow.pk}/simulate/")
    assert page.status_code == 200
    response = client.post(
        f"/admin/workflows/workflow/{workflow.pk}/simulate/",
        {
            "event_type": "lead.created",
            "payload": json.dumps({"id": 3, "annual_revenue": 5000000, "budget": 90000}),
        },
    )
    html = response.content.decode()
    assert "A run would start" in html and "qualified" in html
    assert Event.objects.count() == 0 and Run.objects.count() == 0
    raw = client.get(f"/admin/workflows/workflow/{workflow.pk}/raw/").content.decode()
    assert "qualify-high-value-leads" in raw


def test_runs_are_read_only_in_the_admin(client: Client, admin_user: Any, drain: Any) -> None:
    client.force_login(admin_user)
    workflow = workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    from automation.services import workflow_execute

    run = workflow_execute(workflow_id=workflow.pk, payload={"lead": {"id": 999}})
    drain()
    page = client.get(f"/admin/automation/run/{run.pk}/change/").content.decode()
    assert "ENTITY_NOT_FOUND" in page
    assert client.get("/admin/automation/run/add/").status_code == 403


def test_a_schedule_raises_an_event(drain: Any) -> None:
    emit_scheduled("report.daily", {"kind": "daily"})
    event = Event.objects.get(type="report.daily")
    assert event.source == "schedule" and event.payload["kind"] == "daily"
