"""The event catalogue: every event type the engine can raise or accept, with the shape of
its context, at ``GET /api/v1/event-types/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import models
from rest_framework.test import APIClient

from automation.catalogue import declare_event, undeclare_event
from automation.receivers import connected_models
from automation.registry import SENSITIVE_FIELDS, registrations

pytestmark = pytest.mark.django_db

# What each kind of model field is in a context, written out here rather than read from
# the catalogue's own mapping, so that a wrong mapping fails.
EXPECTED_TYPES = {
    models.BigAutoField: "integer",
    models.AutoField: "integer",
    models.CharField: "string",
    models.EmailField: "string",
    models.TextField: "string",
    models.DecimalField: "number",
    models.DateTimeField: "datetime",
    models.DateField: "date",
    models.BooleanField: "boolean",
    models.PositiveSmallIntegerField: "integer",
    models.PositiveIntegerField: "integer",
    models.IntegerField: "integer",
    models.SmallIntegerField: "integer",
    models.JSONField: "any",
    models.UUIDField: "string",
}


def _expected_type(field: models.Field) -> str:
    from django.contrib.auth import get_user_model

    if field.is_relation:
        return "user" if field.related_model is get_user_model() else "object"
    return EXPECTED_TYPES[type(field)]


def _catalogue(client: APIClient, **params: str) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/event-types/", params)
    assert response.status_code == 200, response.content
    return {entry["type"]: entry for entry in response.json()["results"]}


def _fields(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {field["path"]: field for field in entry["fields"]}


def test_every_registered_model_event_is_listed_with_its_paths_and_types(api: APIClient) -> None:
    # Given the registered models whose saves raise events (crm's Lead and Deal)
    connected = [r for r in registrations() if r.model in connected_models()]
    assert {r.name for r in connected} >= {"lead", "deal"}

    # When the catalogue is read
    catalogue = _catalogue(api)

    # Then each has created/updated/deleted and a _changed event per tracked field, every
    # concrete field at <name>.<field> with its type, and event.* and actor.*
    for registration in connected:
        name = registration.name
        actions = ["created", "updated", "deleted"] + [f"{f}_changed" for f in registration.track]
        for action in actions:
            entry = catalogue[f"{name}.{action}"]
            assert (entry["group"], entry["kind"]) == (name, "model")
            fields = _fields(entry)
            for field in registration.model._meta.concrete_fields:
                if field.name in SENSITIVE_FIELDS:
                    continue
                path = f"{name}.{field.name}"
                assert path in fields, (entry["type"], path)
                if field.name not in registration.masked:
                    assert fields[path]["type"] == _expected_type(field), path
                if field.choices:
                    assert fields[path]["choices"] == [value for value, _ in field.choices]
            for path, kind in (
                ("event.id", "integer"),
                ("event.type", "string"),
                ("event.occurred_at", "datetime"),
                ("actor.id", "integer"),
                ("actor.username", "string"),
            ):
                assert fields[path]["type"] == kind, (entry["type"], path)
        for tracked in registration.track:
            fields = _fields(catalogue[f"{name}.{tracked}_changed"])
            assert fields[f"old_{tracked}"]["nullable"] is True
            assert f"new_{tracked}" in fields


def test_a_lead_status_change_says_what_its_paths_hold(api: APIClient) -> None:
    entry = _catalogue(api)["lead.status_changed"]
    assert entry["label"] == "Lead: status changed"
    fields = _fields(entry)
    assert fields["lead.status"] == {
        "path": "lead.status",
        "type": "string",
        "choices": ["new", "qualified", "disqualified", "converted"],
        "nullable": False,
        "label": "Status",
    }
    assert fields["new_status"]["choices"] == fields["lead.status"]["choices"]
    assert fields["lead.annual_revenue"]["type"] == "number"
    assert fields["lead.owner"]["type"] == "user" and fields["lead.owner"]["nullable"] is True
    # The owner is a user summary: its email is there because the registration allows it.
    assert {"lead.owner.id", "lead.owner.username", "lead.owner.email"} <= set(fields)
    assert {"path": "lead.owner", "entity": "user"} in entry["related"]
    # A deal reaches its lead, one level deep.
    deal = _catalogue(api)["deal.created"]
    assert {"path": "deal.lead", "entity": "lead"} in deal["related"]
    assert _fields(deal)["deal.lead.company_name"]["type"] == "string"
    assert _fields(deal)["deal.close_date"]["type"] == "date"


@pytest.fixture
def invoice_paid() -> Iterator[str]:
    declare_event(
        "invoice.paid",
        schema={
            "type": "object",
            "properties": {
                "invoice_id": {"type": "integer", "title": "Invoice"},
                "total": {"type": "number"},
                "currency": {"type": "string", "enum": ["EUR", "USD"]},
                "paid_on": {"type": "string", "format": "date"},
                "customer": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "vip": {"type": "boolean"}},
                },
                "note": {"type": ["string", "null"]},
            },
        },
        description="An invoice was paid in full.",
    )
    yield "invoice.paid"
    undeclare_event("invoice.paid")


def test_a_declared_domain_event_is_listed_with_its_schema(
    api: APIClient, invoice_paid: str
) -> None:
    entry = _catalogue(api)[invoice_paid]
    assert (entry["group"], entry["kind"], entry["description"]) == (
        "invoice",
        "domain",
        "An invoice was paid in full.",
    )
    fields = _fields(entry)
    assert {
        path: fields[path]["type"] for path in fields if not path.startswith(("event", "actor"))
    } == {
        "invoice_id": "integer",
        "total": "number",
        "currency": "string",
        "paid_on": "date",
        "customer": "object",
        "customer.name": "string",
        "customer.vip": "boolean",
        "note": "string",
        "payload": "object",
    }
    assert fields["currency"]["choices"] == ["EUR", "USD"]
    assert fields["invoice_id"]["label"] == "Invoice"
    assert fields["note"]["nullable"] is True and fields["total"]["nullable"] is False
    # The sample domain declares its own events from its ready().
    assert _catalogue(api)["deal.won"]["kind"] == "domain"


def test_task_sla_and_manual_events_are_listed(api: APIClient) -> None:
    catalogue = _catalogue(api)
    for event_type in ("task.created", "task.assigned", "task.completed", "task.escalated"):
        assert catalogue[event_type]["kind"] == "task", event_type
    for event_type in ("task.sla_warning", "task.sla_breached"):
        assert catalogue[event_type]["kind"] == "sla", event_type
    completed = _fields(catalogue["task.completed"])
    assert completed["task.priority"]["choices"] == ["low", "medium", "high", "urgent"]
    assert completed["transition.to_state"]["type"] == "string"
    assert catalogue["workflow.*.executed"]["kind"] == "manual"
    # Tasks raise their events from the inbox's services, not from model signals: the
    # registered task model's generic events are not offered.
    assert "task.updated" not in catalogue and "task.deleted" not in catalogue


def test_a_scheduled_event_type_is_listed(api: APIClient) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(
        name="hourly digest",
        task="flowdesk.emit_scheduled",
        interval=every,
        args=json.dumps(["digest.hourly", {"size": 10}]),
    )
    entry = _catalogue(api)["digest.hourly"]
    assert entry["kind"] == "schedule"


def test_q_filters_and_the_answer_is_the_same_shape(api: APIClient) -> None:
    found = _catalogue(api, q="status")
    assert "lead.status_changed" in found
    assert all("status" in t or "status" in e["label"].lower() for t, e in found.items())
    assert _catalogue(api, q="no-such-event-anywhere") == {}


def test_only_staff_and_authors_read_it(anon_api: APIClient, make_user: Any) -> None:
    from django.contrib.auth.models import Permission

    assert anon_api.get("/api/v1/event-types/").status_code == 401
    agent = make_user("agent")
    client = APIClient()
    client.force_authenticate(agent)
    response = client.get("/api/v1/event-types/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    author = make_user("author")
    author.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    client.force_authenticate(type(author).objects.get(pk=author.pk))
    assert client.get("/api/v1/event-types/").status_code == 200
    assert client.post("/api/v1/event-types/", {}, format="json").status_code == 405


def test_the_endpoint_is_in_the_openapi_schema(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/event-types/"]["get"]
    assert any(p["name"] == "q" for p in operation["parameters"])
    components = schema["components"]["schemas"]
    assert set(components["EventType"]["properties"]) == {
        "type",
        "group",
        "kind",
        "label",
        "description",
        "fields",
        "related",
    }
    assert set(components["ContextField"]["properties"]) == {
        "path",
        "type",
        "choices",
        "nullable",
        "label",
    }


def test_event_types_named_in_settings_are_declared_and_can_start_workflows(
    api: APIClient, settings: Any
) -> None:
    from automation.apps import _declare_configured_events

    settings.FLOWDESK = {**settings.FLOWDESK, "EVENT_TYPES": ["ops.pinged"]}
    document = {"slug": "pinged", "name": "Pinged", "triggers": [{"event_type": "ops.pinged"}]}
    refused = api.post("/api/v1/workflows/validate/", document, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["issues"][0]["path"] == "triggers[0].event_type"
    _declare_configured_events()
    try:
        listed = api.get("/api/v1/event-types/", {"q": "ops.pinged"}).json()["results"]
        assert [entry["type"] for entry in listed] == ["ops.pinged"]
        assert listed[0]["kind"] == "domain"
        valid = api.post("/api/v1/workflows/validate/", document, format="json")
        assert valid.status_code == 200, valid.json()
    finally:
        undeclare_event("ops.pinged")
