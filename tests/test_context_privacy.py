"""Privacy of the context: what a run learns about related users and masked fields.

Given a lead owned by a superuser with an email, a last login and a join date, when the
lead is saved, then the event's context (and so the run, its step inputs and the admin)
shows the owner as id, username and display name only, plus the email where the
registration says so (the sample CRM does, for ``{{lead.owner.email}}``); with a
registration that masks fields, the masked values are "***" in the context, the step
inputs, the simulate answer and the export file, while the other fields stay readable.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from automation.models import ActionRun, Event, Export, StepStatus
from automation.registry import MASKED, register_model
from crm import engine
from crm.models import Lead
from tests.step_servers import execute, one_step_workflow, step_of

pytestmark = pytest.mark.django_db

PRIVATE_KEYS = {
    "last_login",
    "is_superuser",
    "is_staff",
    "date_joined",
    "password",
    "is_active",
    "first_name",
    "last_name",
}


@pytest.fixture
def owner(make_user: Any) -> Any:
    user = make_user("grace", superuser=True)
    user.first_name, user.last_name = "Grace", "Hopper"
    user.last_login = timezone.now()
    user.save()
    return user


@pytest.fixture
def masked_leads() -> Iterator[None]:
    """Lead registered as a stricter host would: owner without email, two fields masked."""
    register_model(
        Lead,
        name="lead",
        track=["status", "owner"],
        writable=["status"],
        exportable=["id", "company_name", "email", "annual_revenue", "owner"],
        visibility=engine.owned_by,
        masked=["email", "annual_revenue"],
    )
    yield
    engine.register()


def lead_event(lead: Lead) -> Event:
    return Event.objects.filter(type="lead.created", entity_id=str(lead.pk)).get()


def test_a_related_user_is_id_username_display_name_and_allowed_email(owner: Any) -> None:
    lead = Lead.objects.create(company_name="Acme", email="buyer@acme.test", owner=owner)
    context = lead_event(lead).payload
    assert context["lead"]["owner"] == {
        "id": owner.pk,
        "username": "grace",
        "display_name": "Grace Hopper",
        "email": "grace@example.com",
    }
    assert context["owner"] == context["lead"]["owner"]
    assert context["lead"]["owner_id"] == owner.pk
    assert context["lead"]["email"] == "buyer@acme.test"
    text = json.dumps(context)
    assert [key for key in PRIVATE_KEYS if f'"{key}"' in text] == []


def test_masked_fields_stay_masked_in_context_step_input_admin_and_simulate(
    owner: Any, masked_leads: None, drain: Any, api: Any, admin_user: Any
) -> None:
    lead = Lead.objects.create(
        company_name="Acme", email="buyer@acme.test", annual_revenue=2_500_000, owner=owner
    )
    context = lead_event(lead).payload
    assert context["lead"]["email"] == context["lead"]["annual_revenue"] == MASKED
    assert context["lead"]["company_name"] == "Acme"
    assert context["lead"]["owner"] == {
        "id": owner.pk,
        "username": "grace",
        "display_name": "Grace Hopper",
    }

    workflow = one_step_workflow(
        "note",
        "add_note",
        {
            "entity_type": "lead",
            "entity_id": "{{lead.id}}",
            "note": "{{lead.company_name}} <{{lead.email}}> {{lead.annual_revenue}} "
            "owner={{lead.owner.username}}/{{lead.owner.email}}",
        },
    )
    run = execute(workflow, context)
    drain()
    step = step_of(run)
    assert step.status == StepStatus.COMPLETED, step.error
    assert step.input["note"] == "Acme <***> *** owner=grace/"

    client = Client()
    client.force_login(admin_user)
    pages = [
        client.get(f"/admin/automation/run/{run.pk}/change/"),
        client.get(f"/admin/automation/event/{lead_event(lead).pk}/change/"),
        api.get(f"/api/v1/runs/{run.pk}/", HTTP_ACCEPT="application/json"),
    ]
    for response in pages:
        assert response.status_code == 200
        text = response.content.decode()
        assert "buyer@acme.test" not in text and "2500000" not in text
        assert "grace@example.com" not in text

    response = api.post(
        f"/api/v1/workflows/{workflow.pk}/simulate/",
        {"event_type": "lead.created", "entity_id": str(lead.pk)},
        format="json",
    )
    assert response.status_code == 200, response.content
    simulated = response.json()
    assert simulated["event"]["context"]["lead"]["email"] == MASKED
    [simulated_step] = simulated["steps"]
    assert simulated_step["rendered_config"]["note"] == "Acme <***> *** owner=grace/"
    assert "buyer@acme.test" not in response.content.decode()
    assert "buyer@acme.test" not in json.dumps(list(ActionRun.objects.values("input", "output")))


def test_masked_fields_are_masked_in_exports(
    owner: Any, masked_leads: None, drain: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    settings.SITE_URL = "https://flowdesk.example"
    Lead.objects.create(
        company_name="Acme", email="buyer@acme.test", annual_revenue=10, owner=owner
    )
    Lead.objects.create(company_name="Blank", owner=owner)
    run = execute(
        one_step_workflow(
            "export", "enqueue_export", {"entity_type": "lead", "email_to": "ops@example.com"}
        ),
        {},
        actor=owner,
    )
    drain()
    step = step_of(run)
    assert step.status == StepStatus.COMPLETED, step.error
    export = Export.objects.get(action_run=step)
    with open(tmp_path / export.file.name, newline="", encoding="utf-8") as handle:
        rows = {row["company_name"]: row for row in csv.DictReader(handle)}
    assert rows["Acme"]["email"] == rows["Acme"]["annual_revenue"] == MASKED
    assert rows["Blank"]["email"] == MASKED  # empty, still masked: no oracle for blanks
    assert rows["Acme"]["owner"] == str(owner.pk)


def test_registration_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown masked fields"):
        register_model(Lead, name="lead_x", masked=["nope"])
    with pytest.raises(ValueError, match="not relations to the user model"):
        register_model(Lead, name="lead_x", user_fields_with_email=["company_name"])
    with pytest.raises(ValueError, match="cannot be tracked"):
        register_model(Lead, name="lead_x", track=["status"], masked=["status"])


def test_the_actor_carries_no_more_than_its_summary(owner: Any) -> None:
    from automation.events import emit

    event = emit("deal.won", {"deal_id": 7}, actor=owner)
    assert event.payload["actor"] == {
        "id": owner.pk,
        "username": "grace",
        "email": "grace@example.com",
        "is_staff": True,
    }
