"""``GET /api/v1/step-types/``: every registered step type with its config schema, which
the builder page turns into forms; and the builder pages' access rules."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from automation.actions import get_step_type, step_types
from workflows.models import Workflow
from workflows.services import draft_save

pytestmark = pytest.mark.django_db


def test_every_registered_step_type_is_listed_with_its_schema(api: APIClient) -> None:
    response = api.get("/api/v1/step-types/")
    assert response.status_code == 200, response.content
    listed = {t["name"]: t for t in response.json()["results"]}
    # the engine's, the inbox's and the tests' own (host) step types
    assert set(listed) == set(step_types())
    assert {"add_note", "create_task", "send_notification", "test_sleep"} <= set(listed)
    for name, entry in listed.items():
        registered = get_step_type(name)
        assert entry["schema"] == registered.schema
        jsonschema.Draft202012Validator.check_schema(entry["schema"])
        assert entry["label"] and isinstance(entry["description"], str)
        assert entry["secret_fields"] == list(registered.secret_fields)
        assert entry["render_modes"] == registered.render_modes
    assert listed["call_webhook"]["secret_fields"] == ["url", "headers", "body"]
    assert listed["send_email"]["render_modes"]["html_body"] == "html"
    assert listed["delay"]["waits"] == "always"
    assert listed["create_task"]["waits"] == "optional"
    assert listed["add_note"]["waits"] == "never"
    assert listed["add_note"]["schema"]["required"] == ["entity_type", "entity_id", "note"]
    assert listed["call_webhook"]["atomic"] is False


def test_one_step_type_and_an_unknown_one(api: APIClient) -> None:
    body = api.get("/api/v1/step-types/update_field/").json()
    assert body["name"] == "update_field" and body["label"] == "Update a field"
    response = api.get("/api/v1/step-types/no_such_step/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_step_types_need_staff_with_the_workflow_permissions(make_user: Any) -> None:
    client = APIClient()
    assert client.get("/api/v1/step-types/").status_code in (401, 403)
    agent = make_user("agent")
    client.force_authenticate(agent)
    response = client.get("/api/v1/step-types/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    staff = make_user("clerk", staff=True)
    client.force_authenticate(staff)
    assert client.get("/api/v1/step-types/").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    staff = type(staff).objects.get(pk=staff.pk)
    client.force_authenticate(staff)
    assert client.get("/api/v1/step-types/").status_code == 200


def test_step_types_are_in_the_openapi_schema(api: APIClient) -> None:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/step-types/" in schema["paths"]
    assert "/api/v1/step-types/{name}/" in schema["paths"]
    properties = schema["components"]["schemas"]["StepType"]["properties"]
    assert {"name", "schema", "secret_fields", "render_modes", "waits"} <= set(properties)


def test_builder_pages_need_the_workflow_permissions(make_user: Any, admin_user: Any) -> None:
    workflow = draft_save(document={"slug": "empty", "name": "Empty", "triggers": [], "steps": []})
    url = f"/workflows/{workflow.pk}/builder/"
    client = Client()
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(make_user("clerk", staff=True))
    assert client.get(url).status_code == 403
    assert client.get("/workflows/new/").status_code == 403
    client.force_login(admin_user)
    html = client.get(url).content.decode()
    assert 'id="builder"' in html and "js/builder.js" in html and 'id="builder-lookups"' in html


def test_a_new_workflow_is_an_empty_draft_opened_in_the_builder(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.post("/workflows/new/", {"name": "Qualify leads", "slug": ""})
    workflow = Workflow.objects.get(slug="qualify-leads")
    assert (
        response.status_code == 302 and response["Location"] == f"/workflows/{workflow.pk}/builder/"
    )
    assert workflow.has_draft and workflow.published_version is None
    again = client.post("/workflows/new/", {"name": "Qualify leads", "slug": ""})
    assert again.status_code == 200 and "a workflow with this slug exists" in again.content.decode()


def test_admin_and_home_link_to_the_builder(admin_user: Any) -> None:
    workflow = draft_save(
        document={"slug": "linked", "name": "Linked", "triggers": [], "steps": []}
    )
    client = Client()
    client.force_login(admin_user)
    builder = f'href="/workflows/{workflow.pk}/builder/"'
    assert builder in client.get("/admin/workflows/workflow/").content.decode()
    assert (
        builder in client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content.decode()
    )
    assert builder in client.get("/").content.decode()
