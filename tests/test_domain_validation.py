"""Validation that knows the domain: each mistake that used to fail only at run time is
refused on save, on ``validate/`` and on publish, in the API and in the admin, with its own
stable code at its JSON path; warnings are apart and never block."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import publish
from workflows.definition import normalise
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

BASE: dict[str, Any] = {
    "slug": "domain-checked",
    "name": "Domain checked",
    "triggers": [
        {
            "event_type": "lead.created",
            "conditions": {"field": "lead.annual_revenue", "operator": "gte", "value": 1000},
        }
    ],
    "steps": [
        {
            "key": "qualify",
            "type": "update_field",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
                "field": "status",
                "value": "qualified",
            },
        },
        {
            "key": "note",
            "type": "add_note",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
                "note": "Qualified {{lead.company_name}} (was {{lead.status}})",
            },
        },
    ],
}


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _append_step(step: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda document: document["steps"].append(step)


def _reference_later(document: dict[str, Any]) -> None:
    document["steps"][0]["config"]["value"] = "{{steps.later.result}}"
    document["steps"].append(
        {
            "key": "later",
            "type": "add_note",
            "config": {"entity_type": "lead", "entity_id": "{{lead.id}}", "note": "done"},
        }
    )


# (case, change to BASE, JSON path, code)
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "unknown entity type",
        _set(["steps", 0, "config", "entity_type"], "leed"),
        "steps[0].config.entity_type",
        "UNKNOWN_ENTITY_TYPE",
    ),
    (
        "unknown field",
        _set(["steps", 0, "config", "field"], "nope"),
        "steps[0].config.field",
        "UNKNOWN_FIELD",
    ),
    (
        "non-writable field",
        _set(["steps", 0, "config", "field"], "company_name"),
        "steps[0].config.field",
        "FIELD_NOT_WRITABLE",
    ),
    (
        "value not among the choices",
        _set(["steps", 0, "config", "value"], "bogus"),
        "steps[0].config.value",
        "NOT_A_CHOICE",
    ),
    (
        "assignee that does not exist",
        _append_step(
            {
                "key": "follow_up",
                "type": "create_task",
                "config": {"title": "Call them", "assignee": "nobody-by-that-name"},
            }
        ),
        "steps[2].config.assignee",
        "UNKNOWN_USER",
    ),
    (
        "delay that does not parse",
        _append_step({"key": "wait", "type": "delay", "config": {"for": "2 fortnights"}}),
        "steps[2].config.for",
        "INVALID_DURATION",
    ),
    (
        "unknown event type",
        _set(["triggers", 0, "event_type"], "lead.craeted"),
        "triggers[0].event_type",
        "UNKNOWN_EVENT_TYPE",
    ),
    (
        "contains on a number",
        _set(
            ["triggers", 0, "conditions"],
            {"field": "annual_revenue", "operator": "contains", "value": "1"},
        ),
        "triggers[0].conditions.operator",
        "OPERATOR_NOT_APPLICABLE",
    ),
    (
        "unknown template variable",
        _set(["steps", 1, "config", "note"], "Lead {{ledd.id}}"),
        "steps[1].config.note",
        "UNKNOWN_VARIABLE",
    ),
    (
        "a step that runs later",
        _reference_later,
        "steps[0].config.value",
        "STEP_NOT_UPSTREAM",
    ),
]
IDS = [case[0] for case in CASES]


def _document(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    mutate(document)
    return document


def _codes(error: dict[str, Any]) -> list[tuple[str, str]]:
    return [(issue["path"], issue["code"]) for issue in error["issues"]]


def test_the_base_document_is_valid(api: APIClient) -> None:
    response = api.post("/api/v1/workflows/validate/", BASE, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"valid": True}


@pytest.mark.parametrize(("case", "mutate", "path", "code"), CASES, ids=IDS)
def test_the_api_refuses_it_with_its_code_and_path(
    api: APIClient, case: str, mutate: Callable[[dict[str, Any]], None], path: str, code: str
) -> None:
    document = _document(mutate)
    for url in ("/api/v1/workflows/validate/", "/api/v1/workflows/"):
        response = api.post(url, document, format="json")
        assert response.status_code == 400, (url, response.content)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert _codes(error) == [(path, code)], (url, error)
        # The envelope keeps its fields for older clients, with the same path.
        assert list(error["fields"]) == [path]
    assert not Workflow.objects.exists()


@pytest.mark.parametrize(("case", "mutate", "path", "code"), CASES, ids=IDS)
def test_validate_existing_and_publish_refuse_a_draft_that_went_wrong(
    api: APIClient, case: str, mutate: Callable[[dict[str, Any]], None], path: str, code: str
) -> None:
    # Given a published workflow whose stored draft holds the mistake (written around the
    # API, as an older release could have stored it)
    created = api.post("/api/v1/workflows/", BASE, format="json").json()
    publish(api, created["id"])
    Workflow.objects.filter(pk=created["id"]).update(draft=normalise(_document(mutate)))

    # When it is validated and published, then both refuse it with the code and path
    for url in ("validate", "publish"):
        response = api.post(f"/api/v1/workflows/{created['id']}/{url}/")
        assert response.status_code == 400, (url, response.content)
        assert _codes(response.json()["error"]) == [(path, code)], url
    assert Workflow.objects.get(pk=created["id"]).published_version.number == 1


def _admin_form(document: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": document["name"],
        "slug": document["slug"],
        "description": "",
        "is_active": "on",
        "triggers-TOTAL_FORMS": str(len(document["triggers"])),
        "triggers-INITIAL_FORMS": "0",
        "triggers-MIN_NUM_FORMS": "0",
        "triggers-MAX_NUM_FORMS": "1000",
        "steps-TOTAL_FORMS": str(len(document["steps"])),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for i, trigger in enumerate(document["triggers"]):
        data[f"triggers-{i}-event_type"] = trigger["event_type"]
        data[f"triggers-{i}-conditions"] = json.dumps(trigger.get("conditions"))
        data[f"triggers-{i}-priority"] = "0"
        data[f"triggers-{i}-is_active"] = "on"
    for i, step in enumerate(document["steps"]):
        data.update(
            {
                f"steps-{i}-key": step["key"],
                f"steps-{i}-type": step["type"],
                f"steps-{i}-config": json.dumps(step["config"]),
                f"steps-{i}-conditions": json.dumps(step.get("conditions")),
                f"steps-{i}-after": json.dumps(step.get("after")),
                f"steps-{i}-retry": "null",
                f"steps-{i}-timeout_seconds": "",
                f"steps-{i}-position": str(i),
            }
        )
    return data


def test_the_admin_saves_the_base_document(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    response = client.post("/admin/workflows/workflow/add/", _admin_form(BASE))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Workflow.objects.get().has_draft


@pytest.mark.parametrize(("case", "mutate", "path", "code"), CASES, ids=IDS)
def test_the_admin_refuses_it_with_its_code_and_path(
    client: Client,
    admin_user: Any,
    case: str,
    mutate: Callable[[dict[str, Any]], None],
    path: str,
    code: str,
) -> None:
    client.force_login(admin_user)
    response = client.post(
        "/admin/workflows/workflow/add/", _admin_form(_document(mutate)), follow=True
    )
    page = response.content.decode()
    assert f"{path}: " in page and f"[{code}]" in page, page[:4000]
    assert not Workflow.objects.exists()


def test_the_admin_refuses_publishing_a_draft_that_went_wrong(
    client: Client, admin_user: Any, api: APIClient
) -> None:
    created = api.post("/api/v1/workflows/", BASE, format="json").json()
    broken = _document(_set(["steps", 0, "config", "field"], "nope"))
    Workflow.objects.filter(pk=created["id"]).update(draft=normalise(broken))
    client.force_login(admin_user)
    response = client.post(f"/admin/workflows/workflow/{created['id']}/publish/", follow=True)
    page = response.content.decode()
    assert "Not published" in page
    assert "steps[0].config.field: " in page and "[UNKNOWN_FIELD]" in page
    assert Workflow.objects.get(pk=created["id"]).published_version is None


def test_condition_values_are_checked_against_the_field(api: APIClient) -> None:
    document = copy.deepcopy(BASE)
    document["triggers"][0]["conditions"] = {
        "and": [
            {"field": "lead.status", "operator": "in", "value": ["new", "hot"]},
            {"field": "lead.annual_revenue", "operator": "gte", "value": "a lot"},
            {"field": "lead.nope", "operator": "exists"},
            {"field": "lead.created_at", "operator": "gte", "value": "yesterday"},
        ]
    }
    response = api.post("/api/v1/workflows/validate/", document, format="json")
    assert response.status_code == 400
    assert _codes(response.json()["error"]) == [
        ("triggers[0].conditions.and[0].value[1]", "NOT_A_CHOICE"),
        ("triggers[0].conditions.and[1].value", "VALUE_TYPE_MISMATCH"),
        ("triggers[0].conditions.and[2].field", "UNKNOWN_PATH"),
        ("triggers[0].conditions.and[3].value", "VALUE_TYPE_MISMATCH"),
    ]


def test_a_boolean_is_not_ordered(api: APIClient) -> None:
    from automation.catalogue import declare_event, undeclare_event

    declare_event(
        "lead.scored",
        schema={"type": "object", "properties": {"hot": {"type": "boolean"}}},
    )
    try:
        document = copy.deepcopy(BASE)
        document["triggers"] = [
            {
                "event_type": "lead.scored",
                "conditions": {"field": "hot", "operator": "gte", "value": 1},
            }
        ]
        document["steps"] = [document["steps"][1]]
        document["steps"][0]["config"] = {"entity_type": "lead", "entity_id": 1, "note": "hot"}
        response = api.post("/api/v1/workflows/validate/", document, format="json")
        assert response.status_code == 400
        assert _codes(response.json()["error"]) == [
            ("triggers[0].conditions.operator", "OPERATOR_NOT_APPLICABLE")
        ]
    finally:
        undeclare_event("lead.scored")


def test_a_pattern_must_match_a_known_event(api: APIClient) -> None:
    document = copy.deepcopy(BASE)
    document["triggers"] = [{"event_type": "invoice.*"}]
    response = api.post("/api/v1/workflows/validate/", document, format="json")
    assert _codes(response.json()["error"]) == [("triggers[0].event_type", "UNKNOWN_EVENT_TYPE")]
    document["triggers"] = [{"event_type": "deal.*"}]
    document["steps"] = [
        {"key": "note", "type": "add_note", "config": {**BASE["steps"][1]["config"], "note": "x"}}
    ]
    assert api.post("/api/v1/workflows/validate/", document, format="json").status_code == 200


def test_a_path_only_some_events_carry_is_a_warning_that_does_not_block(
    api: APIClient,
) -> None:
    # Given a workflow on every lead event, whose note reads old_status (only the
    # status_changed event carries it)
    document = copy.deepcopy(BASE)
    document["triggers"] = [{"event_type": "lead.*"}]
    document["steps"][1]["config"]["note"] = "From {{old_status}} to {{lead.status}}"
    response = api.post("/api/v1/workflows/validate/", document, format="json")

    # Then validate/ says valid and warns, and saving is not refused
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["valid"] is True
    assert [(w["path"], w["code"]) for w in body["warnings"]] == [
        ("steps[1].config.note", "PATH_NOT_IN_EVERY_EVENT")
    ]
    assert api.post("/api/v1/workflows/", document, format="json").status_code == 201


def test_templated_values_are_left_to_run_time(api: APIClient) -> None:
    document = copy.deepcopy(BASE)
    document["steps"][0]["config"]["value"] = "{{new_status}}"
    document["steps"].append(
        {
            "key": "follow_up",
            "type": "create_task",
            "config": {"title": "Call", "assignee": "{{lead.owner.email}}", "queue": "{{x}}"},
        }
    )
    response = api.post("/api/v1/workflows/validate/", document, format="json")
    # new_status is not in a created event's context; the assignee is known at run time,
    # and so would be the queue, were x a variable the event has.
    assert _codes(response.json()["error"]) == [
        ("steps[0].config.value", "UNKNOWN_VARIABLE"),
        ("steps[2].config.queue", "UNKNOWN_VARIABLE"),
    ]
