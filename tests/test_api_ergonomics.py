"""API ergonomics: filters name things the way their detail URLs do and refuse values that
name nothing; every action endpoint has its own request form (in the schema and the
browsable API); the token endpoint for API clients."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.events import event_emit
from automation.services import workflow_execute
from crm.demo import QUALIFY_HIGH_VALUE_LEADS
from tests.conftest import create_published
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def refused(response: Any, field: str, reason: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["fields"]
    assert error["codes"][field] == reason


@pytest.fixture
def workflow(api: APIClient) -> Workflow:
    body = create_published(api, copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS))
    return Workflow.objects.get(pk=body["id"])


# --- filters ----------------------------------------------------------------------------


def test_runs_filter_by_workflow_id_or_slug(api: APIClient, workflow: Workflow) -> None:
    run = workflow_execute(workflow_id=workflow.pk, payload={"lead": {"id": 1}})
    for value in (workflow.slug, str(workflow.pk)):
        rows = api.get("/api/v1/runs/", {"workflow": value}).json()["results"]
        assert [row["id"] for row in rows] == [run.pk], value
    refused(api.get("/api/v1/runs/", {"workflow": "no-such-flow"}), "workflow", "UNKNOWN_WORKFLOW")
    refused(api.get("/api/v1/runs/", {"workflow": "999999"}), "workflow", "UNKNOWN_WORKFLOW")
    refused(api.get("/api/v1/runs/", {"status": "exploded"}), "status", "invalid_choice")
    refused(api.get("/api/v1/runs/", {"event": "999999"}), "event", "UNKNOWN_EVENT")
    refused(api.get("/api/v1/runs/", {"created_after": "yesterday"}), "created_after", "invalid")
    rows = api.get("/api/v1/runs/", {"event": str(run.event_id)}).json()["results"]
    assert [row["id"] for row in rows] == [run.pk]


def test_a_slug_that_is_another_workflows_id_is_ambiguous(
    api: APIClient, workflow: Workflow
) -> None:
    document = copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS)
    document.update(slug=str(workflow.pk), name="Numbered")
    assert api.post("/api/v1/workflows/", document, format="json").status_code == 201
    refused(
        api.get("/api/v1/runs/", {"workflow": str(workflow.pk)}), "workflow", "AMBIGUOUS_WORKFLOW"
    )


def test_triggers_and_actions_filter_by_workflow_id_or_slug(
    api: APIClient, workflow: Workflow
) -> None:
    for url in ("/api/v1/triggers/", "/api/v1/actions/"):
        by_slug = api.get(url, {"workflow": workflow.slug}).json()["results"]
        by_id = api.get(url, {"workflow": str(workflow.pk)}).json()["results"]
        assert by_slug == by_id and by_slug, url
        refused(api.get(url, {"workflow": "no-such-flow"}), "workflow", "UNKNOWN_WORKFLOW")


def test_events_filters_refuse_unknown_values(api: APIClient) -> None:
    from django.db import transaction

    with transaction.atomic():
        event = event_emit("deal.won", {"amount": 5})
    rows = api.get("/api/v1/events/", {"type": "deal.won"}).json()["results"]
    assert [row["id"] for row in rows] == [event.pk]
    refused(
        api.get("/api/v1/events/", {"entity_type": "planet"}), "entity_type", "UNKNOWN_ENTITY_TYPE"
    )
    refused(api.get("/api/v1/events/", {"source": "carrier-pigeon"}), "source", "invalid_choice")
    refused(api.get("/api/v1/events/", {"caused_by_run": "999999"}), "caused_by_run", "UNKNOWN_RUN")
    assert api.get("/api/v1/events/", {"entity_type": "lead"}).status_code == 200


# --- per-action request forms -----------------------------------------------------------


def _request_schema(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    body = schema["paths"][path]["post"].get("requestBody")
    if body is None:
        return None
    ref = body["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/runs/{id}/suspend/", set()),
        ("/api/v1/runs/{id}/resume/", set()),
        ("/api/v1/runs/{id}/cancel/", set()),
        ("/api/v1/runs/{id}/retry/", set()),
        ("/api/v1/runs/{id}/rerun/", set()),
        ("/api/v1/tasks/{id}/claim/", set()),
        ("/api/v1/tasks/{id}/transition/", {"action", "input", "outcome"}),
        ("/api/v1/tasks/{id}/complete/", {"data", "outcome"}),
        ("/api/v1/tasks/{id}/reassign/", {"assignee", "queue", "reason"}),
        ("/api/v1/tasks/{id}/escalate/", {"reason", "priority", "assignee", "queue"}),
        ("/api/v1/workflows/{id}/execute/", {"payload"}),
        (
            "/api/v1/workflows/{id}/simulate/",
            {"event_type", "payload", "entity_id", "event_id", "sample"},
        ),
        ("/api/v1/notifications/{id}/read/", set()),
    ],
)
def test_action_endpoints_document_their_own_input(
    api: APIClient, path: str, expected: set[str]
) -> None:
    schema = api.get("/api/schema/", {"format": "json"}).json()
    request = _request_schema(schema, path)
    fields = set((request or {}).get("properties", {}))
    assert fields == expected
    assert "trigger_index" not in fields and "status" not in fields


def test_the_browsable_api_shows_the_operations_form(admin_user: Any, workflow: Workflow) -> None:
    run = workflow_execute(workflow_id=workflow.pk, payload={})
    browser = APIClient()
    browser.force_login(admin_user)
    page = browser.get(f"/api/v1/runs/{run.pk}/suspend/", HTTP_ACCEPT="text/html")
    assert page.status_code == 405
    html = page.content.decode()
    assert 'name="trigger_index"' not in html and 'name="causation_depth"' not in html
    task_page = browser.get("/api/v1/tasks/1/reassign/", HTTP_ACCEPT="text/html")
    assert task_page.status_code == 405
    assert 'name="reason"' in task_page.content.decode()


# --- the token endpoint -----------------------------------------------------------------


def test_token_for_api_clients(make_user: Any) -> None:
    make_user("client", password="pw-123456!")
    anonymous = APIClient()
    issued = anonymous.post(
        "/api/v1/auth/token/", {"username": "client", "password": "pw-123456!"}, format="json"
    )
    assert issued.status_code == 200, issued.content
    token = issued.json()["token"]
    again = anonymous.post(
        "/api/v1/auth/token/", {"username": "client", "password": "pw-123456!"}, format="json"
    )
    assert again.json()["token"] == token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/tasks/").status_code == 200

    for body in (
        {"username": "client", "password": "wrong"},
        {"username": "client"},
        {},
        {"username": "nobody", "password": "pw-123456!"},
    ):
        response = anonymous.post("/api/v1/auth/token/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"

    assert client.delete("/api/v1/auth/token/").status_code == 204
    revoked = client.get("/api/v1/tasks/")
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    unauthenticated = anonymous.delete("/api/v1/auth/token/")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "NOT_AUTHENTICATED"
