"""The dry run (``POST workflows/{id}/simulate/`` and the admin's simulate page) says what
a run would do, step by step and with the reasons, and agrees with the real run."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from automation.events import emit
from automation.models import Event, Note, Run
from crm.models import Lead
from workflows.services import workflow_save

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def check(key: str, field: str, message: str, **step: Any) -> dict[str, Any]:
    return {
        "key": key,
        "type": "validate",
        "config": {
            "condition": {"field": field, "operator": "eq", "value": True},
            "message": message,
        },
        **step,
    }


def note(key: str, **step: Any) -> dict[str, Any]:
    return {
        "key": key,
        "type": "add_note",
        "config": {"entity_type": "lead", "entity_id": "{{lead_id}}", "note": f"{key} ran"},
        **step,
    }


BRANCHES = {
    "slug": "branches",
    "name": "Branches",
    "triggers": [
        {"event_type": "dry.check", "conditions": {"field": "go", "operator": "eq", "value": True}}
    ],
    "steps": [
        check("gate", "ok", "not ok", after=[]),
        check("soft", "nope", "soft refusal", after=[], allow_failure=True),
        note("after_soft", after=["soft"]),
        note(
            "vip_only",
            after=[],
            conditions={"and": [{"field": "vip", "operator": "eq", "value": True}]},
        ),
        check("bad", "nope", "bad refusal", after=["gate"]),
        note("downstream", after=["bad"]),
        note("further", after=["downstream"]),
    ],
}


def simulate(api: APIClient, workflow: Any, **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/workflows/{workflow.pk}/simulate/", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_each_step_is_predicted_with_its_reason_and_the_real_run_agrees(
    api: APIClient, drain: Any
) -> None:
    lead = Lead.objects.create(company_name="Branch Co")
    workflow = workflow_save(document=BRANCHES)
    payload = {"go": True, "ok": True, "nope": False, "vip": False, "lead_id": lead.pk}

    result = simulate(api, workflow, payload=payload)
    assert result["would_start"] is True and result["event"]["source"] == "payload"
    assert result["match"] == "Trigger #0 matches dry.check: a run would start."
    steps = {step["key"]: step for step in result["steps"]}
    predicted = {key: (s["status_if_run"], s.get("reason")) for key, s in steps.items()}
    assert predicted == {
        "gate": ("completed", "passes"),
        "soft": ("failed", "fails: soft refusal"),
        "after_soft": ("completed", "would add a note"),
        "vip_only": ("skipped", "condition false at conditions.and[0]"),
        "bad": ("failed", "fails: bad refusal"),
        "downstream": ("cancelled", "upstream 'bad' failed"),
        "further": ("cancelled", "upstream 'downstream' was cancelled"),
    }
    assert result["outcome"] == "failed"
    assert steps["gate"]["evaluated"] == "for real"
    assert steps["after_soft"]["evaluated"] == "described"
    assert steps["after_soft"]["rendered_config"]["entity_id"] == lead.pk
    assert steps["bad"]["error_code"] == "VALIDATION_FAILED"
    assert steps["vip_only"]["condition_trace"]["children"][0]["actual"] is False
    assert not Note.objects.exists() and not Run.objects.exists()

    event = emit("dry.check", payload)
    drain()
    run = Run.objects.get(event=event)
    actual = {ar.step_key: ar for ar in run.action_runs.all()}
    assert {key: ar.status for key, ar in actual.items()} == {
        key: status for key, (status, _) in predicted.items()
    }
    assert run.status == "failed"
    # The engine's record names the upstream step too.
    assert actual["downstream"].error == "Upstream 'bad' failed."
    assert actual["further"].error == "Upstream 'downstream' was cancelled."
    assert actual["further"].error_code == "UPSTREAM_FAILED"


def test_no_matching_trigger_is_said_plainly_and_predicts_no_steps(api: APIClient) -> None:
    workflow = workflow_save(document=BRANCHES)
    result = simulate(api, workflow, payload={"go": False})
    assert result["would_start"] is False and result["steps"] == []
    assert result["outcome"] is None
    assert result["match"] == (
        "No trigger matches dry.check (trigger #0 condition false at "
        "triggers[0].conditions): no run would start."
    )
    other = simulate(api, workflow, event_type="dry.other", payload={"go": True})
    assert other["steps"] == []
    assert "trigger #0 listens to dry.check" in other["match"]


def test_a_step_on_an_object_that_does_not_exist_is_predicted_failed_as_it_fails(
    api: APIClient, drain: Any
) -> None:
    workflow = workflow_save(
        document={
            "slug": "ghost",
            "name": "Ghost",
            "triggers": [{"event_type": "dry.ghost"}],
            "steps": [
                {
                    "key": "qualify",
                    "type": "update_field",
                    "config": {
                        "entity_type": "lead",
                        "entity_id": "{{lead_id}}",
                        "field": "status",
                        "value": "qualified",
                    },
                },
                note("after"),
            ],
        }
    )
    result = simulate(api, workflow, payload={"lead_id": 987654})
    steps = {step["key"]: step for step in result["steps"]}
    assert steps["qualify"]["status_if_run"] == "failed"
    assert steps["qualify"]["error_code"] == "ENTITY_NOT_FOUND"
    assert steps["after"]["status_if_run"] == "cancelled"

    event = emit("dry.ghost", {"lead_id": 987654})
    drain()
    statuses = dict(Run.objects.get(event=event).action_runs.values_list("step_key", "error_code"))
    assert statuses == {"qualify": "ENTITY_NOT_FOUND", "after": "UPSTREAM_FAILED"}


def test_the_payload_can_be_a_stored_event_or_a_sample(api: APIClient) -> None:
    lead = Lead.objects.create(company_name="Stored Co")
    workflow = workflow_save(document=BRANCHES)
    event = emit("dry.check", {"go": True, "ok": False, "nope": True, "lead_id": lead.pk})

    result = simulate(api, workflow, event_id=event.pk)
    assert result["event"]["source"] == "event"
    assert result["event"]["context"]["event"]["id"] == event.pk
    assert result["event"]["type"] == "dry.check"
    steps = {step["key"]: step["status_if_run"] for step in result["steps"]}
    assert steps["gate"] == "failed" and steps["soft"] == "completed"

    response = api.post(
        f"/api/v1/workflows/{workflow.pk}/simulate/",
        {"event_id": event.pk, "event_type": "lead.created"},
        format="json",
    )
    assert response.status_code == 400
    assert "event_type" in response.json()["error"]["fields"]
    response = api.post(
        f"/api/v1/workflows/{workflow.pk}/simulate/", {"event_id": 99999999}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"event_id": ["no event 99999999"]}

    # No payload: a sample of the event type's model.
    leads = workflow_save(
        document={
            "slug": "leads",
            "name": "Leads",
            "triggers": [{"event_type": "lead.status_changed"}],
            "steps": [
                {
                    "key": "hello",
                    "type": "add_note",
                    "config": {"entity_type": "lead", "entity_id": "{{lead.id}}", "note": "hi"},
                }
            ],
        }
    )
    sample = simulate(api, leads)
    assert sample["event"]["source"] == "sample"
    assert sample["event"]["type"] == "lead.status_changed"
    context = sample["event"]["context"]
    assert context["lead"]["company_name"] == "Sample company name"
    assert context["lead"]["status"] == "new"
    assert context["changes"] == {"status": {"old": None, "new": "new"}}
    assert sample["would_start"] is True
    assert Event.objects.count() == 2  # the lead's and the emitted one: nothing new


def test_the_admin_page_explains_the_shape_and_shows_reasons(
    client: Client, admin_user: Any
) -> None:
    client.force_login(admin_user)
    lead = Lead.objects.create(company_name="Page Co")
    workflow = workflow_save(document=BRANCHES)
    url = f"/admin/workflows/workflow/{workflow.pk}/simulate/"
    page = client.get(url).content.decode()
    assert 'id="simulate-shape"' in page and "a stored event" in page
    response = client.post(
        url,
        {
            "event_type": "dry.check",
            "payload": f'{{"go": true, "ok": true, "nope": false, "lead_id": {lead.pk}}}',
        },
    )
    html = response.content.decode()
    assert "Trigger #0 matches dry.check: a run would start." in html
    assert "upstream &#x27;bad&#x27; failed" in html
    assert "condition false at conditions.and[0]" in html
    assert 'id="simulate-outcome">failed<' in html

    missing = client.post(url, {"event_id": "99999999"}).content.decode()
    assert "no event 99999999" in missing
