"""Findings of the outside audit (issue 15), each held by a test that failed before its fix:
bad input answers 4xx with a stable code, not 500; the one body limit; /metrics needs its
token; what callers may see and do."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import as_user
from tests.test_api_errors import assert_error

pytestmark = pytest.mark.django_db


def raw_post(api: APIClient, path: str, body: str) -> Any:
    return api.generic(
        "POST", path, body.encode("utf-8", "surrogatepass"), content_type="application/json"
    )


# --- NUL bytes, lone surrogates and deep nesting in request bodies --------------------


@pytest.mark.parametrize("text", ["a\\u0000b", "\\ud800", "x\\udfffy"])
def test_bad_text_in_an_event_payload_is_a_validation_error(api: APIClient, text: str) -> None:
    body = '{"type": "deal.won", "payload": {"note": {"deep": ["ok", "TEXT"]}}}'.replace(
        "TEXT", text
    )
    error = assert_error(raw_post(api, "/api/v1/events/", body), 400, "VALIDATION_ERROR")
    assert "payload.note.deep[1]" in error["fields"]


def test_bad_text_in_a_key_is_a_validation_error(api: APIClient) -> None:
    body = '{"type": "deal.won", "payload": {"k\\u0000": 1}}'
    error = assert_error(raw_post(api, "/api/v1/events/", body), 400, "VALIDATION_ERROR")
    assert "payload" in error["fields"]


def test_bad_text_in_a_step_config_is_a_validation_error(api: APIClient) -> None:
    definition = {
        "name": "nul",
        "trigger": {"event": "deal.won"},
        "steps": [{"key": "n", "type": "add_note", "config": {"text": "a\u0000"}}],
    }
    error = assert_error(
        api.post("/api/v1/workflows/", definition, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "steps[0].config.text" in error["fields"]


def test_six_hundred_levels_in_a_payload_are_refused(api: APIClient) -> None:
    payload = json.dumps({"type": "deal.won", "payload": {"a": json.loads("[" * 600 + "]" * 600)}})
    error = assert_error(raw_post(api, "/api/v1/events/", payload), 400, "NESTING_TOO_DEEP")
    assert error["fields"]


def test_three_thousand_levels_in_request_json_are_refused(api: APIClient) -> None:
    body = '{"type": "deal.won", "payload": {"a": ' + "[" * 3000 + "]" * 3000 + "}}"
    assert_error(raw_post(api, "/api/v1/events/", body), 400, "NESTING_TOO_DEEP")


def test_bad_text_in_a_form_body_is_a_validation_error(api: APIClient) -> None:
    response = api.post(
        "/api/v1/events/", "type=deal.won%00", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 400, "VALIDATION_ERROR")


# --- URL and query parameters ---------------------------------------------------------


@pytest.mark.parametrize("query", ["type=a%00b", "ty%00pe=x", "queue=%00"])
def test_nul_in_a_query_parameter_is_a_validation_error(api: APIClient, query: str) -> None:
    error = assert_error(api.get(f"/api/v1/events/?{query}"), 400, "VALIDATION_ERROR")
    assert any(path.startswith("query") for path in error["fields"])


def test_nul_in_a_lookup_id_is_refused(api: APIClient) -> None:
    assert_error(api.get("/api/v1/tasks/1%00/"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/?queue=%C2%B2",
        "/api/v1/tasks/?assignee=%C2%B2",
        "/api/v1/runs/?workflow=%C2%B2",
        "/api/v1/events/?caused_by_run=%C2%B2",
    ],
)
def test_non_ascii_digits_in_filters_are_validation_errors(api: APIClient, path: str) -> None:
    assert_error(api.get(path), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/%C2%B2/",
        "/api/v1/runs/%C2%B2/",
        "/api/v1/notifications/%C2%B2/",
        "/api/v1/workflows/%C2%B2/",
        "/api/v1/events/%C2%B2/",
    ],
)
def test_non_ascii_digits_in_lookup_ids_are_not_found(api: APIClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404, (path, response.content)


def test_nul_in_a_page_query_is_a_plain_400(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    assert client.get("/tasks/?q=%00").status_code == 400


# --- one body limit, one JSON answer, every content type ------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=XYZ",
        "text/plain",
    ],
)
def test_a_body_over_the_limit_is_413_json(
    api: APIClient, content_type: str, settings: Any
) -> None:
    settings.API_MAX_BODY_BYTES = 10_000
    body = b"a" * 10_001
    response = api.generic("POST", "/api/v1/events/", body, content_type=content_type)
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "10000 bytes" in error["message"]


def test_a_ten_megabyte_form_body_is_413_json(api: APIClient) -> None:
    body = "type=deal.won&payload=" + "x" * (10 * 1024 * 1024)
    response = api.generic(
        "POST", "/api/v1/events/", body, content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


# --- /metrics --------------------------------------------------------------------------


def test_metrics_with_debug_off_and_no_token_is_refused(client: Client, settings: Any) -> None:
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.content.decode()


def test_metrics_with_debug_on_and_no_token_is_open(client: Client, settings: Any) -> None:
    settings.DEBUG = True
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


def test_a_non_ascii_bearer_token_is_401_not_a_crash(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3crét").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


# --- Idempotency-Keys: scoped per caller, bounded ---------------------------------------


def token_client(user: Any) -> APIClient:
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0]}")
    return client


def test_another_callers_same_key_starts_a_new_event(api: APIClient, make_user: Any) -> None:
    other = make_user("ops", superuser=True)
    body = {"type": "deal.won", "payload": {"n": 1}}
    first = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    theirs = token_client(other).post(
        "/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert first.status_code == again.status_code == theirs.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert theirs.json()["id"] != first.json()["id"]
    # the other caller's different body under the same key is their own business
    changed = token_client(other).post(
        "/api/v1/events/", {"type": "deal.lost"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert_error(changed, 422, "IDEMPOTENCY_KEY_REUSED")


@pytest.mark.parametrize("length", [197, 198, 199, 200])
def test_a_long_key_up_to_the_bound_works(api: APIClient, length: int) -> None:
    key = "k" * length
    first = api.post(
        "/api/v1/events/", {"type": "deal.won"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    again = api.post(
        "/api/v1/events/", {"type": "deal.won"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert first.status_code == 202, first.content
    assert first.json()["id"] == again.json()["id"]


def test_a_key_over_the_bound_is_refused(api: APIClient) -> None:
    response = api.post(
        "/api/v1/events/", {"type": "deal.won"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "headers.Idempotency-Key" in error["fields"]


# --- monitoring needs its permission; exports theirs ------------------------------------


def test_monitoring_needs_the_monitoring_permission(make_user: Any, client: Client) -> None:
    from django.contrib.auth.models import Permission

    staff = make_user("watcher", staff=True)
    assert_error(token_client(staff).get("/api/v1/monitoring/metrics/"), 403, "PERMISSION_DENIED")
    client.force_login(staff)
    assert client.get("/monitoring/").status_code == 403
    assert 'href="/monitoring/"' not in client.get("/").content.decode()
    staff.user_permissions.add(Permission.objects.get(codename="view_monitoring"))
    staff = type(staff).objects.get(pk=staff.pk)  # drop the permission cache
    assert token_client(staff).get("/api/v1/monitoring/metrics/").status_code == 200
    client.force_login(staff)
    assert client.get("/monitoring/").status_code == 200


def test_the_demo_seed_grants_monitoring(make_user: Any) -> None:
    from django.contrib.auth import get_user_model

    from workflows.demo import seed_users

    seed_users()
    manager = make_user("mgr", staff=True, groups=("Managers",))
    assert manager.has_perm("automation.view_monitoring")
    assert get_user_model().objects.get(username="demo").has_perm("automation.view_monitoring")


@pytest.mark.parametrize("hours", ["abc", "%C2%B2", "-3", "99999999999999999999"])
def test_monitoring_page_with_a_bad_window_uses_the_default(
    client: Client, admin_user: Any, hours: str
) -> None:
    client.force_login(admin_user)
    response = client.get(f"/monitoring/?hours={hours}")
    assert response.status_code == 200


def test_simulate_with_a_non_id_entity_is_a_validation_error(api: APIClient) -> None:
    from tests.conftest import create_published
    from tests.test_workflow_api import document

    workflow = create_published(api, document())
    response = api.post(
        f"/api/v1/workflows/{workflow['id']}/simulate/",
        {"event_type": "lead.created", "entity_id": "abc"},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "entity_id" in error["fields"]


# --- related objects within what the caller sees; pages render only that ---------------


@pytest.fixture
def hidden_parent(make_user: Any) -> dict[str, Any]:
    from tasks_inbox import services

    agent, other = make_user("agent"), make_user("other")
    secret = services.task_create(title="Board-only acquisition plan", assignee=other)
    return {"agent": agent, "other": other, "secret": secret}


def test_a_parent_out_of_sight_answers_as_a_missing_one(hidden_parent: dict[str, Any]) -> None:
    from tasks_inbox.models import Task

    agent, secret = hidden_parent["agent"], hidden_parent["secret"]
    client = as_user(agent)
    unseen = client.post("/api/v1/tasks/", {"title": "child", "parent": secret.pk}, format="json")
    missing = client.post(
        "/api/v1/tasks/", {"title": "child", "parent": secret.pk + 1000}, format="json"
    )
    unseen_error = assert_error(unseen, 400, "VALIDATION_ERROR")
    missing_error = assert_error(missing, 400, "VALIDATION_ERROR")
    assert unseen_error["fields"]["parent"] == [
        m.replace(str(secret.pk + 1000), str(secret.pk)) for m in missing_error["fields"]["parent"]
    ]
    assert not Task.objects.filter(title="child").exists()
    # a parent the caller sees is fine
    own = client.post("/api/v1/tasks/", {"title": "mine"}, format="json").json()
    child = client.post("/api/v1/tasks/", {"title": "child", "parent": own["id"]}, format="json")
    assert child.status_code == 201, child.content


def test_queue_filters_name_only_what_the_caller_sees(hidden_parent: dict[str, Any]) -> None:
    from tasks_inbox import services

    agent, secret, other = hidden_parent["agent"], hidden_parent["secret"], hidden_parent["other"]
    services.task_create(title="sub", assignee=other, parent=secret)
    client = as_user(agent)
    unseen = client.get(f"/api/v1/tasks/?parent={secret.pk}")
    missing = client.get(f"/api/v1/tasks/?parent={secret.pk + 1000}")
    assert_error(unseen, 400, "VALIDATION_ERROR")
    assert_error(missing, 400, "VALIDATION_ERROR")
    assert unseen.json()["error"]["fields"].keys() == missing.json()["error"]["fields"].keys()


def test_the_childs_page_does_not_name_an_invisible_parent(
    hidden_parent: dict[str, Any], client: Client
) -> None:
    from tasks_inbox import services

    agent, secret = hidden_parent["agent"], hidden_parent["secret"]
    child = services.task_create(title="Prepare the slides", assignee=agent, parent=secret)
    client.force_login(agent)
    html = client.get(f"/inbox/tasks/{child.pk}/").content.decode()
    assert "Prepare the slides" in html
    assert "Board-only acquisition plan" not in html
    client.force_login(hidden_parent["other"])
    services.task_reassign(task_id=child.pk, actor=None, assignee=hidden_parent["other"])
    html = client.get(f"/inbox/tasks/{child.pk}/").content.decode()
    assert "Board-only acquisition plan" in html  # its viewer may see the plan


# --- reassign and escalate answer what happened ----------------------------------------


def test_reassign_out_of_sight_answers_200_with_what_happened(make_user: Any) -> None:
    from tasks_inbox import services
    from tasks_inbox.models import Task

    agent, colleague = make_user("agent"), make_user("colleague")
    task = services.task_create(title="Hand me over", assignee=agent)
    response = as_user(agent).post(
        f"/api/v1/tasks/{task.pk}/reassign/", {"assignee": colleague.pk}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"id": task.pk, "reassigned": True, "visible": False}
    assert Task.objects.get(pk=task.pk).assignee_id == colleague.pk


def test_escalate_out_of_sight_answers_200_with_what_happened(make_user: Any) -> None:
    from tasks_inbox import services
    from tasks_inbox.models import Task

    agent, colleague = make_user("agent"), make_user("colleague")
    task = services.task_create(title="Too hot", assignee=agent)
    response = as_user(agent).post(
        f"/api/v1/tasks/{task.pk}/escalate/",
        {"assignee": colleague.pk, "priority": "urgent"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"id": task.pk, "escalated": True, "visible": False}
    assert Task.objects.get(pk=task.pk).assignee_id == colleague.pk


def test_the_schema_documents_the_handover_answer(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json").json()
    handover = schema["components"]["schemas"]["TaskHandover"]
    refs = {item["$ref"].rsplit("/", 1)[-1] for item in handover["oneOf"]}
    assert refs == {"TaskDetail", "TaskOutOfSight"}
