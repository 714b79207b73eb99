"""Drafts: saving writes a workflow's draft, nothing that runs changes until publish/; diff
and discard through the API and the admin; a new workflow runs nothing until it is
published; export/import keep drafts apart from versions."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from automation.events import emit
from automation.models import Run
from crm.demo import DEAL_NEGOTIATION, QUALIFY_HIGH_VALUE_LEADS
from crm.models import Deal
from tests.conftest import create_published, notes_on, publish
from workflows.models import Action, Trigger, Workflow
from workflows.services import draft_save, workflow_save, workflow_set_active

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

SLOW = {
    "slug": "slow",
    "name": "Slow",
    "triggers": [{"event_type": "deal.won"}],
    "steps": [
        {"key": "wait", "type": "delay", "config": {"for": "2 days"}},
        {
            "key": "note",
            "type": "add_note",
            "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "v1 note"},
        },
    ],
}


def test_a_draft_changes_nothing_until_publish_then_new_events_run_the_new_version(
    api: APIClient, drain: Any
) -> None:
    workflow = create_published(api, copy.deepcopy(SLOW))
    deal = Deal.objects.create(name="D")
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        emit("deal.won", {"deal_id": deal.pk})
        drain()
        before = Run.objects.get()
        assert before.status == "waiting" and before.version.number == 1

        # The draft changes the note and moves the trigger to another event type.
        draft = copy.deepcopy(SLOW)
        draft["steps"][1]["config"]["note"] = "v2 note"
        draft["triggers"] = [{"event_type": "deal.lost"}]
        response = api.put(f"/api/v1/workflows/{workflow['id']}/", draft, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["has_draft"] is True and body["version"] == 1
        assert body["draft_updated_at"] is not None
        assert body["triggers"][0]["event_type"] == "deal.lost"

        # Runs started before and after the draft edit are on version 1, and the published
        # trigger still matches: deal.lost starts nothing.
        emit("deal.won", {"deal_id": deal.pk})
        emit("deal.lost", {"deal_id": deal.pk})
        drain()
        assert Run.objects.count() == 2
        traveller.shift(dt.timedelta(days=2, seconds=1))
        drain()
        assert {(r.version.number, r.status) for r in Run.objects.all()} == {(1, "completed")}
        assert notes_on(deal) == ["v1 note", "v1 note"]

        # A run parked on its delay when the draft is published finishes on its version.
        emit("deal.won", {"deal_id": deal.pk})
        drain()
        parked = Run.objects.get(status="waiting")
        assert publish(api, workflow["id"])["version"] == 2
        emit("deal.won", {"deal_id": deal.pk})
        emit("deal.lost", {"deal_id": deal.pk})
        drain()
        traveller.shift(dt.timedelta(days=2, seconds=1))
        drain()
    parked.refresh_from_db()
    assert parked.status == "completed" and parked.version.number == 1
    newest = Run.objects.exclude(version__number=1).get()
    assert newest.version.number == 2 and newest.event.type == "deal.lost"
    assert newest.status == "completed"
    assert notes_on(deal) == ["v1 note", "v1 note", "v1 note", "v2 note"]


def test_diff_and_discard_through_the_api(api: APIClient) -> None:
    workflow = create_published(api, copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS))
    url = f"/api/v1/workflows/{workflow['id']}"
    published_steps = list(Action.objects.order_by("position").values_list("key", flat=True))
    published_triggers = list(Trigger.objects.order_by("id").values_list("pk", flat=True))
    assert api.get(f"{url}/diff/").json()["has_changes"] is False

    draft = copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS)
    draft["name"] = "Renamed"
    draft["triggers"][0]["priority"] = 7
    draft["steps"][1]["config"]["note"] = "Changed note"
    draft["steps"][1]["retry"] = {"max_attempts": 3}
    removed = draft["steps"].pop(3)["key"]
    draft["steps"].append(
        {"key": "pause", "type": "delay", "config": {"for": "1 hour"}, "after": ["note"]}
    )
    assert api.put(f"{url}/", draft, format="json").status_code == 200

    diff = api.get(f"{url}/diff/").json()
    assert diff["from"] == 1 and diff["to"] == "draft" and diff["has_changes"] is True
    assert diff["workflow"] == {"name": {"from": "Auto-qualify high-value leads", "to": "Renamed"}}
    assert diff["triggers"]["added"] == [] and diff["triggers"]["removed"] == []
    assert diff["triggers"]["changed"] == [
        {"index": 0, "key": "on_lead_created", "changes": {"priority": {"from": 10, "to": 7}}}
    ]
    assert [s["key"] for s in diff["steps"]["added"]] == ["pause"]
    assert diff["steps"]["added"][0]["step"]["after"] == ["note"]
    assert [s["key"] for s in diff["steps"]["removed"]] == [removed]
    changed = {c["key"]: c["changes"] for c in diff["steps"]["changed"]}
    assert changed["note"]["config"] == {
        "note": {
            "from": QUALIFY_HIGH_VALUE_LEADS["steps"][1]["config"]["note"],
            "to": "Changed note",
        }
    }
    assert changed["note"]["retry"] == {"from": None, "to": {"max_attempts": 3}}
    assert api.get(f"{url}/diff/", {"from": "1", "to": "draft"}).json() == diff
    # Reversed: from the draft to version 1.
    back = api.get(f"{url}/diff/", {"from": "draft", "to": "1"}).json()
    assert [s["key"] for s in back["steps"]["added"]] == [removed]
    assert [s["key"] for s in back["steps"]["removed"]] == ["pause"]
    for params, where in (({"from": "9"}, "from"), ({"to": "nope"}, "to")):
        response = api.get(f"{url}/diff/", params)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "UNKNOWN_VERSION"
        assert where in response.json()["error"]["fields"]

    response = api.post(f"{url}/discard-draft/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["has_draft"] is False and body["version"] == 1
    assert body["name"] == "Auto-qualify high-value leads"
    assert [s["key"] for s in body["steps"]] == published_steps
    assert list(Action.objects.order_by("position").values_list("key", flat=True)) == (
        published_steps
    )
    assert list(Trigger.objects.order_by("id").values_list("pk", flat=True)) == (published_triggers)
    assert api.get(f"{url}/diff/").json()["has_changes"] is False
    assert Workflow.objects.get().versions.count() == 1


def test_a_new_workflow_runs_nothing_until_published(api: APIClient, drain: Any) -> None:
    document = copy.deepcopy(SLOW)
    document["steps"] = document["steps"][1:]
    response = api.post("/api/v1/workflows/", document, format="json")
    assert response.status_code == 201, response.content
    workflow = response.json()
    assert workflow["version"] is None and workflow["has_draft"] is True
    deal = Deal.objects.create(name="New")
    emit("deal.won", {"deal_id": deal.pk})
    drain()
    assert Run.objects.count() == 0

    url = f"/api/v1/workflows/{workflow['id']}"
    response = api.post(f"{url}/execute/", {"payload": {"deal_id": deal.pk}}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_RUN_STATE"
    # Simulate reads the published version unless asked for the draft.
    response = api.post(f"{url}/simulate/", {"payload": {"deal_id": deal.pk}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "UNKNOWN_VERSION"
    response = api.post(
        f"{url}/simulate/?version=draft", {"payload": {"deal_id": deal.pk}}, format="json"
    )
    assert response.status_code == 200 and response.json()["would_start"] is True
    # Never published: the draft is all there is, so it cannot be discarded.
    response = api.post(f"{url}/discard-draft/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "DRAFT_ONLY"
    assert Run.objects.count() == 0

    assert publish(api, workflow["id"])["version"] == 1
    emit("deal.won", {"deal_id": deal.pk})
    drain()
    run = Run.objects.get()
    assert run.status == "completed" and run.version.number == 1
    assert notes_on(deal) == ["v1 note"]


def change_form_data(workflow: Workflow, note: str) -> dict[str, Any]:
    """The admin change form as the page posts it, with the note step's text changed."""
    data: dict[str, Any] = {
        "name": workflow.name,
        "slug": workflow.slug,
        "description": workflow.description,
        "is_active": "on",
    }
    triggers = list(workflow.triggers.order_by("id"))
    steps = list(workflow.steps.order_by("position"))
    for prefix, rows in (("triggers", triggers), ("steps", steps)):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": str(len(rows)),
                f"{prefix}-INITIAL_FORMS": str(len(rows)),
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    for i, trigger in enumerate(triggers):
        data.update(
            {
                f"triggers-{i}-id": str(trigger.pk),
                f"triggers-{i}-workflow": str(workflow.pk),
                f"triggers-{i}-event_type": trigger.event_type,
                f"triggers-{i}-conditions": json.dumps(trigger.conditions),
                f"triggers-{i}-priority": str(trigger.priority),
                f"triggers-{i}-is_active": "on",
            }
        )
    for i, step in enumerate(steps):
        config = dict(step.config)
        if step.key == "note":
            config["note"] = note
        data.update(
            {
                f"steps-{i}-id": str(step.pk),
                f"steps-{i}-workflow": str(workflow.pk),
                f"steps-{i}-key": step.key,
                f"steps-{i}-type": step.type,
                f"steps-{i}-config": json.dumps(config),
                f"steps-{i}-conditions": json.dumps(step.conditions),
                f"steps-{i}-after": json.dumps(step.after),
                f"steps-{i}-retry": json.dumps(step.retry),
                f"steps-{i}-timeout_seconds": step.timeout_seconds or "",
                f"steps-{i}-position": str(i),
            }
        )
        if step.allow_failure:
            data[f"steps-{i}-allow_failure"] = "on"
    return data


def test_the_admin_saves_a_draft_shows_its_diff_publishes_and_discards(
    client: Client, admin_user: Any
) -> None:
    client.force_login(admin_user)
    workflow = workflow_save(document=copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS))
    change = f"/admin/workflows/workflow/{workflow.pk}/change/"
    page = client.get(change).content.decode()
    assert "No draft: this is version 1" in page and "Publish the draft" not in page

    response = client.post(change, change_form_data(workflow, "Drafted in the admin"))
    assert response.status_code == 302, response.content.decode()[:3000]
    workflow.refresh_from_db()
    assert workflow.has_draft and workflow.published_version.number == 1
    assert workflow.versions.count() == 1
    assert workflow.draft["steps"][1]["config"]["note"] == "Drafted in the admin"
    assert workflow.published_version.definition["steps"][1]["config"]["note"] != (
        "Drafted in the admin"
    )

    page = client.get(change).content.decode()
    assert "Unpublished draft" in page and "Publish the draft" in page
    assert "Discard the draft" in page
    # The form edits the draft: its rows hold the drafted note.
    assert "Drafted in the admin" in page
    assert f'href="/admin/workflows/workflow/{workflow.pk}/diff/"' in page

    diff = client.get(f"/admin/workflows/workflow/{workflow.pk}/diff/").content.decode()
    assert "From version 1 (current) to the draft" in diff
    assert re.search(
        r"changed step <code>note</code>:\s*<ul><li>config\.note: "
        r"<code>Auto-qualified[^<]*</code> → <code>Drafted in the admin</code>",
        diff,
    ), diff
    listing = client.get("/admin/workflows/workflow/?has_draft=yes").content.decode()
    assert workflow.name in listing
    assert (
        workflow.name not in client.get("/admin/workflows/workflow/?has_draft=no").content.decode()
    )

    response = client.post(f"/admin/workflows/workflow/{workflow.pk}/discard-draft/")
    assert response.status_code == 302
    workflow.refresh_from_db()
    assert not workflow.has_draft and workflow.versions.count() == 1
    assert (
        workflow.steps.get(key="note").config
        == (workflow.published_version.definition["steps"][1]["config"])
    )
    assert (
        "No changes."
        in client.get(f"/admin/workflows/workflow/{workflow.pk}/diff/").content.decode()
    )

    client.post(change, change_form_data(workflow, "Published from the admin"))
    response = client.post(f"/admin/workflows/workflow/{workflow.pk}/publish/", follow=True)
    assert "Published: version 2 is current." in response.content.decode()
    workflow.refresh_from_db()
    assert not workflow.has_draft and workflow.published_version.number == 2
    assert workflow.published_version.definition["steps"][1]["config"]["note"] == (
        "Published from the admin"
    )
    # Publishing and discarding are POSTs only.
    assert client.get(f"/admin/workflows/workflow/{workflow.pk}/publish/").status_code == 403


def test_export_and_import_keep_drafts_apart(tmp_path: Path) -> None:
    qualify = workflow_save(document=copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS))
    drafted = copy.deepcopy(QUALIFY_HIGH_VALUE_LEADS)
    drafted["name"] = "Drafted name"
    draft_save(document=drafted, workflow=qualify)
    workflow_save(document=copy.deepcopy(DEAL_NEGOTIATION))
    draft_save(document={**copy.deepcopy(SLOW), "slug": "only-a-draft"})

    plain = tmp_path / "plain.json"
    call_command("export_workflows", "--output", str(plain), stderr=StringIO())
    versions = json.loads(plain.read_text())
    assert [(d["slug"], d["name"]) for d in versions] == [
        ("deal-negotiation-note", DEAL_NEGOTIATION["name"]),
        ("qualify-high-value-leads", QUALIFY_HIGH_VALUE_LEADS["name"]),
    ]

    full = tmp_path / "full.json"
    call_command("export_workflows", "--include-drafts", "--output", str(full), stderr=StringIO())
    exported = json.loads(full.read_text())
    assert exported["workflows"] == versions
    assert [(d["slug"], d["name"]) for d in exported["drafts"]] == [
        ("only-a-draft", "Slow"),
        ("qualify-high-value-leads", "Drafted name"),
    ]

    Workflow.objects.all().delete()
    call_command("import_workflows", str(full), "--publish", stdout=StringIO())
    state = {
        w.slug: (
            w.published_version.number if w.published_version else None,
            w.published_version.definition["name"] if w.published_version else None,
            w.draft["name"] if w.draft else None,
        )
        for w in Workflow.objects.select_related("published_version")
    }
    assert state == {
        "deal-negotiation-note": (1, DEAL_NEGOTIATION["name"], None),
        "qualify-high-value-leads": (1, QUALIFY_HIGH_VALUE_LEADS["name"], "Drafted name"),
        "only-a-draft": (None, None, "Slow"),
    }
    again = tmp_path / "again.json"
    call_command("export_workflows", "--include-drafts", "--output", str(again), stderr=StringIO())
    assert json.loads(again.read_text()) == exported

    # Without --publish an import only writes drafts: nothing is published.
    Workflow.objects.all().delete()
    call_command("import_workflows", str(plain), stdout=StringIO())
    assert Workflow.objects.count() == 2
    assert not Workflow.objects.filter(published_version__isnull=False).exists()
    assert all(w.has_draft for w in Workflow.objects.all())


# --- an event meets the workflows that were live when it was written -------------------------


def note_workflow(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug,
        "triggers": [{"event_type": "deal.won"}],
        "steps": [
            {
                "key": "note",
                "type": "add_note",
                "config": {
                    "entity_type": "deal",
                    "entity_id": "{{deal_id}}",
                    "note": f"{slug} ran",
                },
            }
        ],
    }


def test_a_backlogged_event_meets_the_workflows_live_when_it_was_written(drain: Any) -> None:
    switched_off = workflow_save(document=note_workflow("switched-off"))
    deal = Deal.objects.create(name="Backlog")
    # The worker is stopped: the event waits in the outbox while the definitions change.
    first = emit("deal.won", {"deal_id": deal.pk})
    workflow_save(document=note_workflow("published-later"))
    workflow_set_active(workflow=switched_off, is_active=False)
    second = emit("deal.won", {"deal_id": deal.pk})
    assert Run.objects.count() == 0

    drain()  # the worker starts
    runs = {
        (run.event_id, run.workflow.slug, run.version.number)
        for run in Run.objects.select_related("workflow", "version")
    }
    assert runs == {(first.pk, "switched-off", 1), (second.pk, "published-later", 1)}
    assert notes_on(deal) == ["published-later ran", "switched-off ran"]
    # The switched-off workflow's version 1 has its window; version 2 is off.
    window = {
        v.number: (v.live_after_event, v.retired_after_event) for v in switched_off.versions.all()
    }
    assert window[1][1] == first.pk and window[2] == (first.pk, None)
    assert window[1][0] is not None and window[1][0] < first.pk


def test_events_after_a_switch_off_start_nothing_and_a_switch_on_starts_again(drain: Any) -> None:
    workflow = workflow_save(document=note_workflow("toggled"))
    deal = Deal.objects.create(name="Toggle")
    workflow_set_active(workflow=workflow, is_active=False)
    off = emit("deal.won", {"deal_id": deal.pk})
    workflow_set_active(workflow=workflow, is_active=True)
    on = emit("deal.won", {"deal_id": deal.pk})
    drain()
    assert list(Run.objects.values_list("event_id", "version__number")) == [(on.pk, 3)]
    assert off.pk < on.pk
