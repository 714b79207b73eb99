"""Authoring through the API: validation with JSON paths, simulation, versions, triggers and
actions endpoints."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.models import ActionRun, Event, Note, Run
from crm.demo import QUALIFY_HIGH_VALUE_LEADS
from crm.models import Lead
from tests.conftest import create_published, publish
from workflows.models import Action, Trigger, Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


def document(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS)
    doc.update(changes)
    return doc


def test_create_read_update_publishes_versions(api: APIClient) -> None:
    response = api.post("/api/v1/workflows/", document(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] is None and body["has_draft"] is True
    body = publish(api, body["id"])
    assert body["version"] == 1 and body["slug"] == "qualify-high-value-leads"
    assert body["has_draft"] is False and body["draft_updated_at"] is None
    assert [s["key"] for s in body["steps"]] == ["qualify", "note", "notify", "follow_up"]
    assert body["triggers"][0]["conditions"]["and"][0]["operator"] == "gte"

    response = api.patch(f"/api/v1/workflows/{body['id']}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 200 and response.json()["version"] == 1
    assert response.json()["has_draft"] is True and response.json()["name"] == "Renamed"
    assert publish(api, body["id"])["version"] == 2
    versions = api.get(f"/api/v1/workflows/{body['id']}/versions/").json()["results"]
    assert [v["number"] for v in versions] == [2, 1]
    assert versions[1]["definition"]["name"] == "Auto-qualify high-value leads"

    restored = api.post(f"/api/v1/workflows/{body['id']}/versions/1/restore/")
    assert restored.status_code == 200
    assert restored.json()["name"] == "Auto-qualify high-value leads"
    assert restored.json()["version"] == 3


INVALID = [
    (
        "unknown operator",
        lambda d: d["triggers"][0]["conditions"]["and"][1].update(operator="equals"),
        "triggers[0].conditions.and[1].operator",
        "unknown operator 'equals'",
    ),
    (
        "in without a list",
        lambda d: d["triggers"][0].update(
            conditions={"field": "status", "operator": "in", "value": "new"}
        ),
        "triggers[0].conditions.value",
        "operator 'in' needs a list value",
    ),
    (
        "cycle",
        lambda d: (d["steps"][0].update(after=["note"]), d["steps"][1].update(after=["qualify"])),
        "steps[0].after",
        "cycle",
    ),
    (
        "unknown after key",
        lambda d: d["steps"][1].update(after=["nope"]),
        "steps[1].after[0]",
        "unknown step 'nope'",
    ),
    (
        "bad template",
        lambda d: d["steps"][1]["config"].update(note="Hello {{lead.company_name"),
        "steps[1].config.note",
        "",
    ),
    (
        "unknown template variable",
        lambda d: d["steps"][1]["config"].update(note="{{ledd.company_name}}"),
        "steps[1].config.note",
        "unknown variable 'ledd'",
    ),
    (
        "unknown step type",
        lambda d: d["steps"][1].update(type="send_fax"),
        "steps[1].type",
        "unknown step type 'send_fax'",
    ),
    (
        "missing config key",
        lambda d: d["steps"][0]["config"].pop("field"),
        "steps[0].config.field",
        "required",
    ),
]


@pytest.mark.parametrize(
    ("name", "mutate", "path", "message"), INVALID, ids=[case[0] for case in INVALID]
)
def test_invalid_definitions_are_refused_with_the_json_path(
    api: APIClient, name: str, mutate: Any, path: str, message: str
) -> None:
    doc = document()
    mutate(doc)
    for url in ("/api/v1/workflows/", "/api/v1/workflows/validate/"):
        response = api.post(url, doc, format="json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert path in error["fields"], error["fields"]
        assert message in " ".join(error["fields"][path])
    assert Workflow.objects.count() == Trigger.objects.count() == Action.objects.count() == 0
    assert WorkflowVersion.objects.count() == 0


def test_invalid_update_changes_nothing(api: APIClient) -> None:
    created = create_published(api, document())
    response = api.patch(
        f"/api/v1/workflows/{created['id']}/",
        {"steps": [{"key": "x", "type": "add_note", "config": {}}]},
        format="json",
    )
    assert response.status_code == 400
    assert "steps[0].config.note" in response.json()["error"]["fields"]
    assert list(Action.objects.order_by("position").values_list("key", flat=True)) == [
        "qualify",
        "note",
        "notify",
        "follow_up",
    ]
    assert WorkflowVersion.objects.count() == 1


def test_simulate_shows_matches_trace_and_rendered_configs_and_changes_nothing(
    api: APIClient, make_user: Any
) -> None:
    workflow = create_published(api, document())
    owner = make_user("olga")
    lead = Lead.objects.create(
        company_name="Sim Corp",
        annual_revenue=Decimal("1500000"),
        budget=Decimal("20000"),
        owner=owner,
    )
    before = (Event.objects.count(), Run.objects.count(), Note.objects.count())

    response = api.post(
        f"/api/v1/workflows/{workflow['id']}/simulate/",
        {
            "event_type": "lead.created",
            "payload": {
                "id": lead.pk,
                "company_name": "Acme",
                "annual_revenue": "2000000.00",
                "budget": 60000,
            },
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["would_start"] is True
    trace = result["triggers"][0]["trace"]
    assert trace["result"] is True
    assert [c["result"] for c in trace["children"]] == [True, True]
    assert trace["children"][0]["actual"] == "2000000.00"
    steps = {s["key"]: s for s in result["steps"]}
    assert steps["qualify"]["rendered_config"] == {
        "entity_type": "lead",
        "entity_id": lead.pk,
        "field": "status",
        "value": "qualified",
    }
    assert steps["note"]["rendered_config"]["note"] == (
        "Auto-qualified: revenue 2000000.00, budget 60000."
    )
    assert steps["qualify"]["status_if_run"] == "completed"

    # From a stored object: the budget is below the bar.
    response = api.post(
        f"/api/v1/workflows/{workflow['id']}/simulate/",
        {"event_type": "lead.created", "entity_id": str(lead.pk)},
        format="json",
    )
    result = response.json()
    assert result["would_start"] is False
    assert [c["result"] for c in result["triggers"][0]["trace"]["children"]] == [True, False]
    assert result["event"]["context"]["lead"]["owner"]["email"] == "olga@example.com"
    lead.refresh_from_db()
    assert lead.status == "new"
    assert before == (Event.objects.count(), Run.objects.count(), Note.objects.count())
    assert ActionRun.objects.count() == 0


def test_trigger_and_action_endpoints_edit_and_republish(api: APIClient) -> None:
    workflow = create_published(api, document())
    trigger_id = Trigger.objects.get().pk
    response = api.patch(f"/api/v1/triggers/{trigger_id}/", {"priority": 99}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == trigger_id and response.json()["priority"] == 99
    assert publish(api, workflow["id"])["version"] == 2
    response = api.post(
        "/api/v1/actions/",
        {"workflow": workflow["slug"], "key": "later", "type": "delay", "config": {"for": "1 day"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    publish(api, workflow["id"])
    bad = api.post(
        "/api/v1/actions/",
        {
            "workflow": workflow["slug"],
            "key": "bad",
            "type": "delay",
            "config": {"for": "1 day"},
            "after": ["ghost"],
        },
        format="json",
    )
    assert bad.status_code == 400
    assert "steps[5].after[0]" in bad.json()["error"]["fields"]
    detail = api.get(f"/api/v1/workflows/{workflow['id']}/").json()
    assert [s["key"] for s in detail["steps"]] == [
        "qualify",
        "note",
        "notify",
        "follow_up",
        "later",
    ]
    assert detail["version"] == 3
    note_id = Action.objects.get(key="note").pk
    assert api.delete(f"/api/v1/actions/{note_id}/").status_code == 204
    publish(api, workflow["id"])
    assert api.get(f"/api/v1/workflows/{workflow['id']}/").json()["version"] == 4


def test_delete_workflow_with_runs_is_a_conflict(api: APIClient) -> None:
    workflow = create_published(api, document())
    api.post(
        f"/api/v1/workflows/{workflow['id']}/execute/",
        {"payload": {"lead": {"id": 1}}},
        format="json",
    )
    response = api.delete(f"/api/v1/workflows/{workflow['id']}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "WORKFLOW_IN_USE"
