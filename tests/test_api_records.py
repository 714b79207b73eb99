"""API endpoints for what users get and what automation leaves: notifications (mine,
unread count, mark read), notes of an object (as visible as the object), exports (the
requester's or with permission; status, progress, download) and secrets (names listed,
values write-only and never returned)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from automation.models import Export, Note, Secret
from automation.secrets import resolve_secret
from crm.models import Lead
from tasks_inbox import services
from tasks_inbox.models import Notification
from tests.conftest import as_user

pytestmark = pytest.mark.django_db


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


# --- notifications ----------------------------------------------------------------------


def test_notifications_mine_unread_count_and_marking_read(make_user: Any) -> None:
    ann, bob = make_user("ann"), make_user("bob")
    first = Notification.objects.create(recipient=ann, message="one", link="/inbox/")
    Notification.objects.create(recipient=ann, message="two")
    theirs = Notification.objects.create(recipient=bob, message="not yours")
    client = as_user(ann)

    rows = client.get("/api/v1/notifications/").json()["results"]
    assert [row["message"] for row in rows] == ["two", "one"]
    assert client.get("/api/v1/notifications/unread-count/").json() == {"unread": 2}

    read = client.post(f"/api/v1/notifications/{first.pk}/read/")
    assert read.status_code == 200 and read.json()["is_read"] is True
    again = client.post(f"/api/v1/notifications/{first.pk}/read/")
    assert again.status_code == 200 and again.json()["read_at"] == read.json()["read_at"]
    assert client.get("/api/v1/notifications/unread-count/").json() == {"unread": 1}
    unread = client.get("/api/v1/notifications/", {"unread": "true"}).json()["results"]
    assert [row["message"] for row in unread] == ["two"]

    assert error_code(client.post(f"/api/v1/notifications/{theirs.pk}/read/"), 404) == "NOT_FOUND"
    assert error_code(client.get(f"/api/v1/notifications/{theirs.pk}/"), 404) == "NOT_FOUND"
    assert error_code(client.post("/api/v1/notifications/abc/read/"), 404) == "NOT_FOUND"
    assert (
        error_code(client.get("/api/v1/notifications/", {"unread": "maybe"}), 400)
        == "VALIDATION_ERROR"
    )

    marked = client.post("/api/v1/notifications/read-all/")
    assert marked.status_code == 200 and marked.json() == {"marked": 1, "unread": 0}
    assert client.get("/api/v1/notifications/", {"unread": "true"}).json()["results"] == []
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert error_code(APIClient().get("/api/v1/notifications/"), 401) == "NOT_AUTHENTICATED"


# --- notes ------------------------------------------------------------------------------


def _note(target: Any, text: str, visibility: str = "internal") -> Note:
    return Note.objects.create(
        content_type=ContentType.objects.get_for_model(target),
        object_id=str(target.pk),
        note=text,
        visibility=visibility,
    )


def test_notes_of_an_object_are_as_visible_as_the_object(make_user: Any, admin_user: Any) -> None:
    owner, other = make_user("owner"), make_user("other")
    lead = Lead.objects.create(company_name="Acme", owner=owner)
    _note(lead, "first")
    _note(lead, "second", "public")
    _note(Lead.objects.create(company_name="Elsewhere", owner=other), "not this one")
    params = {"entity_type": "lead", "entity_id": str(lead.pk)}

    rows = as_user(owner).get("/api/v1/notes/", params).json()["results"]
    assert [(row["note"], row["entity_type"], row["entity_id"]) for row in rows] == [
        ("second", "lead", str(lead.pk)),
        ("first", "lead", str(lead.pk)),
    ]
    public = as_user(owner).get("/api/v1/notes/", {**params, "visibility": "public"})
    assert [row["note"] for row in public.json()["results"]] == ["second"]
    assert len(as_user(admin_user).get("/api/v1/notes/", params).json()["results"]) == 2

    assert error_code(as_user(other).get("/api/v1/notes/", params), 404) == "NOT_FOUND"
    missing = {"entity_type": "lead", "entity_id": "999999"}
    assert error_code(as_user(admin_user).get("/api/v1/notes/", missing), 404) == "NOT_FOUND"
    bad_id = {"entity_type": "lead", "entity_id": "abc"}
    assert error_code(as_user(admin_user).get("/api/v1/notes/", bad_id), 404) == "NOT_FOUND"
    for bad, field in (
        ({"entity_type": "planet", "entity_id": "1"}, "entity_type"),
        ({"entity_id": "1"}, "entity_type"),
        ({"entity_type": "lead"}, "entity_id"),
        ({**params, "visibility": "secret"}, "visibility"),
    ):
        response = as_user(owner).get("/api/v1/notes/", bad)
        assert error_code(response, 400) == "VALIDATION_ERROR"
        assert field in response.json()["error"]["fields"]


def test_an_agent_reads_the_notes_of_its_task(make_user: Any) -> None:
    agent, stranger = make_user("agent"), make_user("stranger")
    task = services.task_create(title="Call", assignee=agent)
    services.task_note_add(task_id=task.pk, actor=agent, text="Left a message")
    params = {"entity_type": "task", "entity_id": str(task.pk)}
    rows = as_user(agent).get("/api/v1/notes/", params).json()["results"]
    assert [(row["note"], row["author"]) for row in rows] == [("Left a message", "agent")]
    assert error_code(as_user(stranger).get("/api/v1/notes/", params), 404) == "NOT_FOUND"


# --- exports ----------------------------------------------------------------------------


@pytest.fixture
def exports(make_user: Any) -> dict[str, Any]:
    owner, other = make_user("ann"), make_user("bob")
    done = Export.objects.create(
        entity_type="lead", requested_by=owner, row_count=1, fields=["id", "company_name"]
    )
    done.file.save("exports/test-api-download.csv", ContentFile(b"id,company_name\n1,Acme\n"))
    from django.utils import timezone

    done.finished_at = timezone.now()
    done.save(update_fields=["finished_at"])
    pending = Export.objects.create(entity_type="lead", requested_by=owner)
    theirs = Export.objects.create(entity_type="deal", requested_by=other)
    yield {"owner": owner, "other": other, "done": done, "pending": pending, "theirs": theirs}
    done.file.delete()


def test_exports_status_and_download_for_the_requester(exports: dict[str, Any]) -> None:
    client = as_user(exports["owner"])
    rows = client.get("/api/v1/exports/").json()["results"]
    assert {row["id"] for row in rows} == {exports["done"].pk, exports["pending"].pk}
    done = client.get(f"/api/v1/exports/{exports['done'].pk}/").json()
    assert (done["status"], done["row_count"], done["requested_by"]) == ("completed", 1, "ann")
    assert done["download_url"].endswith(f"/api/v1/exports/{exports['done'].pk}/download/")
    download = client.get(done["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"id,company_name\n1,Acme\n"
    assert "attachment" in download["Content-Disposition"]

    pending = client.get(f"/api/v1/exports/{exports['pending'].pk}/").json()
    assert pending["download_url"] is None and pending["status"] == "failed"  # no step
    assert (
        error_code(client.get(f"/api/v1/exports/{exports['pending'].pk}/download/"), 409)
        == "EXPORT_NOT_READY"
    )
    assert error_code(client.get(f"/api/v1/exports/{exports['theirs'].pk}/"), 404) == "NOT_FOUND"
    assert (
        error_code(client.get(f"/api/v1/exports/{exports['theirs'].pk}/download/"), 404)
        == "NOT_FOUND"
    )
    assert error_code(client.get("/api/v1/exports/x1/"), 404) == "NOT_FOUND"


def test_exports_of_others_need_the_permission(exports: dict[str, Any], make_user: Any) -> None:
    auditor = make_user("auditor")
    client = as_user(auditor)
    assert client.get("/api/v1/exports/").json()["results"] == []
    auditor.user_permissions.add(Permission.objects.get(codename="view_export"))
    client = as_user(type(auditor).objects.get(pk=auditor.pk))
    assert len(client.get("/api/v1/exports/").json()["results"]) == 3
    assert client.get(f"/api/v1/exports/{exports['done'].pk}/download/").status_code == 200


# --- secrets ----------------------------------------------------------------------------


def test_secrets_names_listed_values_write_only(api: APIClient) -> None:
    created = api.post(
        "/api/v1/secrets/",
        {"name": "CRM_API_KEY", "value": "s3cr3t-value", "description": "CRM"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert "value" not in created.json() and created.json()["has_value"] is True
    assert b"s3cr3t-value" not in created.content
    assert resolve_secret("CRM_API_KEY") == "s3cr3t-value"
    assert "s3cr3t-value" not in Secret.objects.get(name="CRM_API_KEY").value_encrypted

    listed = api.get("/api/v1/secrets/")
    assert [row["name"] for row in listed.json()["results"]] == ["CRM_API_KEY"]
    assert b"s3cr3t" not in listed.content
    detail = api.get("/api/v1/secrets/CRM_API_KEY/")
    assert detail.status_code == 200 and "value" not in detail.json()

    described = api.patch(
        "/api/v1/secrets/CRM_API_KEY/", {"description": "the CRM's key"}, format="json"
    )
    assert described.status_code == 200 and described.json()["description"] == "the CRM's key"
    assert resolve_secret("CRM_API_KEY") == "s3cr3t-value"
    replaced = api.put(
        "/api/v1/secrets/CRM_API_KEY/", {"name": "CRM_API_KEY", "value": "rotated"}, format="json"
    )
    assert replaced.status_code == 200 and b"rotated" not in replaced.content
    assert resolve_secret("CRM_API_KEY") == "rotated"

    for bad, field in (
        ({"name": "CRM_API_KEY", "value": "again"}, "name"),
        ({"name": "1BAD", "value": "x"}, "name"),
        ({"name": "NO_VALUE"}, "value"),
        ({"name": "EMPTY", "value": ""}, "value"),
    ):
        response = api.post("/api/v1/secrets/", bad, format="json")
        assert error_code(response, 400) == "VALIDATION_ERROR", bad
        assert field in response.json()["error"]["fields"]
    renamed = api.patch("/api/v1/secrets/CRM_API_KEY/", {"name": "OTHER"}, format="json")
    assert error_code(renamed, 400) == "VALIDATION_ERROR"
    no_value = api.put("/api/v1/secrets/CRM_API_KEY/", {"name": "CRM_API_KEY"}, format="json")
    assert error_code(no_value, 400) == "VALIDATION_ERROR"
    assert error_code(api.get("/api/v1/secrets/NOPE/"), 404) == "NOT_FOUND"

    assert api.delete("/api/v1/secrets/CRM_API_KEY/").status_code == 204
    assert not Secret.objects.exists()
    assert error_code(api.delete("/api/v1/secrets/CRM_API_KEY/"), 404) == "NOT_FOUND"


def test_secrets_need_the_model_permissions(make_user: Any) -> None:
    from automation.secrets import secret_set

    secret_set(name="HOOK_TOKEN", value="abc")
    agent = as_user(make_user("agent"))
    assert error_code(agent.get("/api/v1/secrets/"), 403) == "PERMISSION_DENIED"
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_secret"))
    client = as_user(type(viewer).objects.get(pk=viewer.pk))
    assert [row["name"] for row in client.get("/api/v1/secrets/").json()["results"]] == [
        "HOOK_TOKEN"
    ]
    for response in (
        client.post("/api/v1/secrets/", {"name": "NEW", "value": "x"}, format="json"),
        client.patch("/api/v1/secrets/HOOK_TOKEN/", {"value": "y"}, format="json"),
        client.delete("/api/v1/secrets/HOOK_TOKEN/"),
    ):
        assert error_code(response, 403) == "PERMISSION_DENIED"
    assert resolve_secret("HOOK_TOKEN") == "abc"
