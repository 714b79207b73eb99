"""A trigger keeps its identity: its ``key`` in the document, its row and its id in the API,
across republishing, reorders, edits of other triggers and export/import. A new trigger
gets a new key; a removed trigger's id names nothing afterwards (never another trigger)."""

from __future__ import annotations

import copy
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from automation.events import emit
from automation.models import Run
from tests.conftest import create_published, publish
from tests.test_api_errors import assert_error
from workflows.models import Trigger, Workflow

pytestmark = pytest.mark.django_db

DOCUMENT = {
    "slug": "three-triggers",
    "name": "Three triggers",
    "triggers": [
        {"event_type": "deal.won", "priority": 5},
        {"event_type": "deal.lost"},
        {"event_type": "order.placed", "conditions": {"field": "n", "operator": "gt", "value": 1}},
    ],
    "steps": [{"key": "e", "type": "emit_event", "config": {"type": "three.done"}}],
}


def ids_by_event(workflow_id: int) -> dict[str, tuple[int, str]]:
    """event type -> (row id, key) of the workflow's triggers."""
    return {t.event_type: (t.pk, t.key) for t in Trigger.objects.filter(workflow_id=workflow_id)}


def read_document(api: APIClient, workflow_id: int) -> dict[str, Any]:
    """The workflow's document as the API shows it (its triggers with their keys)."""
    body = api.get(f"/api/v1/workflows/{workflow_id}/").json()
    return {k: body[k] for k in ("slug", "name", "description", "is_active", "triggers", "steps")}


def put_and_publish(api: APIClient, workflow_id: int, document: dict[str, Any]) -> dict:
    response = api.put(f"/api/v1/workflows/{workflow_id}/", document, format="json")
    assert response.status_code == 200, response.content
    return publish(api, workflow_id)


def test_triggers_get_keys_and_an_unchanged_republish_keeps_every_id(api: APIClient) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    before = ids_by_event(workflow["id"])
    assert [t["key"] for t in workflow["triggers"]] == [
        "on_deal_won",
        "on_deal_lost",
        "on_order_placed",
    ]
    version = Workflow.objects.get(pk=workflow["id"]).published_version
    assert [t["key"] for t in version.definition["triggers"]] == [
        "on_deal_won",
        "on_deal_lost",
        "on_order_placed",
    ]

    # The same document again, without keys (as first sent) and with them (as read back).
    put_and_publish(api, workflow["id"], copy.deepcopy(DOCUMENT))
    assert ids_by_event(workflow["id"]) == before
    read = read_document(api, workflow["id"])
    put_and_publish(api, workflow["id"], read)
    assert ids_by_event(workflow["id"]) == before
    # Nothing changed: still version 1.
    assert Workflow.objects.get(pk=workflow["id"]).published_version.number == 1
    for trigger_id, key in before.values():
        assert api.get(f"/api/v1/triggers/{trigger_id}/").json()["key"] == key


@pytest.mark.parametrize("with_keys", [False, True])
def test_a_reorder_keeps_every_trigger_id(api: APIClient, with_keys: bool) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    before = ids_by_event(workflow["id"])
    document = read_document(api, workflow["id"]) if with_keys else (copy.deepcopy(DOCUMENT))
    document["triggers"].reverse()
    published = put_and_publish(api, workflow["id"], document)

    assert ids_by_event(workflow["id"]) == before
    assert [t["event_type"] for t in published["triggers"]] == [
        "order.placed",
        "deal.lost",
        "deal.won",
    ]
    rows = Trigger.objects.filter(workflow_id=workflow["id"]).order_by("position")
    assert [t.event_type for t in rows] == ["order.placed", "deal.lost", "deal.won"]
    diff = api.get(f"/api/v1/workflows/{workflow['id']}/diff/?from=1&to=2").json()
    assert diff["triggers"]["added"] == [] and diff["triggers"]["removed"] == []
    assert {c["key"]: c["changes"] for c in diff["triggers"]["changed"]} == {
        "on_order_placed": {"position": {"from": 2, "to": 0}},
        "on_deal_won": {"position": {"from": 0, "to": 2}},
    }


def test_an_edit_to_one_trigger_keeps_the_ids_of_all(api: APIClient) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    before = ids_by_event(workflow["id"])

    # Without keys: the edited trigger is the one on its event type.
    document = copy.deepcopy(DOCUMENT)
    document["triggers"][1]["priority"] = 9
    put_and_publish(api, workflow["id"], document)
    assert ids_by_event(workflow["id"]) == before
    assert Trigger.objects.get(pk=before["deal.lost"][0]).priority == 9

    # With keys, even its event type may change.
    document = read_document(api, workflow["id"])
    document["triggers"][0]["event_type"] = "deal.reopened"
    put_and_publish(api, workflow["id"], document)
    after = ids_by_event(workflow["id"])
    assert after["deal.reopened"] == before["deal.won"]
    assert after["deal.lost"] == before["deal.lost"]
    assert after["order.placed"] == before["order.placed"]

    # Through the trigger endpoint.
    trigger_id = before["order.placed"][0]
    response = api.patch(f"/api/v1/triggers/{trigger_id}/", {"priority": 3}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == trigger_id and response.json()["key"] == "on_order_placed"
    assert ids_by_event(workflow["id"]) == after


def test_a_removed_trigger_id_never_names_another(api: APIClient) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    before = ids_by_event(workflow["id"])
    won, lost = before["deal.won"][0], before["deal.lost"][0]

    assert api.delete(f"/api/v1/triggers/{won}/").status_code == 204
    publish(api, workflow["id"])
    assert ids_by_event(workflow["id"]) == {
        "deal.lost": before["deal.lost"],
        "order.placed": before["order.placed"],
    }
    # A client still holding the removed id: it names nothing, and deletes nothing.
    assert_error(api.get(f"/api/v1/triggers/{won}/"), 404, "NOT_FOUND")
    assert_error(api.delete(f"/api/v1/triggers/{won}/"), 404, "NOT_FOUND")
    assert Trigger.objects.filter(pk=lost).exists()


def test_a_new_trigger_gets_a_new_key_and_the_others_keep_theirs(api: APIClient) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    before = ids_by_event(workflow["id"])
    response = api.post(
        "/api/v1/triggers/",
        {"workflow": "three-triggers", "event_type": "deal.won", "priority": 1},
        format="json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["key"] == "on_deal_won_2"
    publish(api, workflow["id"])
    rows = {t.pk: t.key for t in Trigger.objects.filter(workflow_id=workflow["id"])}
    assert rows == {**{pk: key for pk, key in before.values()}, created["id"]: "on_deal_won_2"}

    # A removed trigger's key is not handed to a new one in the same document.
    document = read_document(api, workflow["id"])
    document["triggers"] = [t for t in document["triggers"] if t["key"] != "on_deal_lost"] + [
        {"event_type": "deal.closed"}
    ]
    put_and_publish(api, workflow["id"], document)
    keys = set(Trigger.objects.filter(workflow_id=workflow["id"]).values_list("key", flat=True))
    assert keys == {"on_deal_won", "on_deal_won_2", "on_order_placed", "on_deal_closed"}


def test_runs_name_the_trigger_that_started_them(api: APIClient, drain: Any) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    document = copy.deepcopy(DOCUMENT)
    document["triggers"].reverse()
    put_and_publish(api, workflow["id"], document)
    emit("deal.lost", {})
    drain()
    run = Run.objects.get(workflow_id=workflow["id"])
    body = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert body["trigger_index"] == 1 and body["trigger_key"] == "on_deal_lost"


@pytest.mark.parametrize(
    ("triggers", "path", "message"),
    [
        ([{"key": "Bad Key", "event_type": "a.b"}], "triggers[0].key", "must be a lowercase"),
        ([{"key": 7, "event_type": "a.b"}], "triggers[0].key", "must be a lowercase"),
        (
            [{"key": "same", "event_type": "a.b"}, {"key": "same", "event_type": "a.c"}],
            "triggers[1].key",
            "duplicate key 'same'",
        ),
    ],
)
def test_bad_trigger_keys_are_refused(
    api: APIClient, triggers: list[dict[str, Any]], path: str, message: str
) -> None:
    document = {**copy.deepcopy(DOCUMENT), "triggers": triggers}
    for url in ("/api/v1/workflows/", "/api/v1/workflows/validate/"):
        error = assert_error(api.post(url, document, format="json"), 400, "VALIDATION_ERROR")
        assert error["fields"][path][0].startswith(message), error


def test_export_and_import_keep_trigger_keys_and_ids(api: APIClient, tmp_path: Path) -> None:
    workflow = create_published(api, copy.deepcopy(DOCUMENT))
    before = ids_by_event(workflow["id"])
    out = tmp_path / "workflows.json"
    call_command("export_workflows", "--output", str(out))
    exported = json.loads(out.read_text())
    documents = exported if isinstance(exported, list) else exported["workflows"]
    (document,) = [d for d in documents if d["slug"] == "three-triggers"]
    assert [t["key"] for t in document["triggers"]] == [
        "on_deal_won",
        "on_deal_lost",
        "on_order_placed",
    ]

    document["triggers"].reverse()
    out.write_text(json.dumps([document]))
    call_command("import_workflows", str(out), "--publish", stdout=StringIO())
    assert ids_by_event(workflow["id"]) == before

    # Into a workflow that does not exist yet, the keys come along.
    Workflow.objects.filter(pk=workflow["id"]).delete()
    call_command("import_workflows", str(out), "--publish", stdout=StringIO())
    imported = Workflow.objects.get(slug="three-triggers")
    assert [t["key"] for t in imported.published_version.definition["triggers"]] == [
        "on_order_placed",
        "on_deal_lost",
        "on_deal_won",
    ]
