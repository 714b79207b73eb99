"""Every API error, ours and the framework's, answers in one shape with a stable code."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_unknown_url_under_api_is_json_404(api: APIClient) -> None:
    error = assert_error(api.get("/api/v1/no-such-thing/"), 404, "NOT_FOUND")
    assert "/api/v1/no-such-thing/" in error["message"]
    assert_error(api.get("/api/nothing"), 404, "NOT_FOUND")


def test_unknown_object_is_404(api: APIClient) -> None:
    assert_error(api.get("/api/v1/workflows/999999/"), 404, "NOT_FOUND")


def test_malformed_json_body(api: APIClient) -> None:
    response = api.post(
        "/api/v1/events/", data='{"type": "deal.won", ', content_type="application/json"
    )
    assert_error(response, 400, "PARSE_ERROR")


def test_wrong_method(api: APIClient) -> None:
    assert_error(api.delete("/api/v1/events/"), 405, "METHOD_NOT_ALLOWED")


def test_missing_token(anon_api: APIClient) -> None:
    response = anon_api.get("/api/v1/workflows/")
    error = assert_error(response, 401, "NOT_AUTHENTICATED")
    assert "credentials" in error["message"].lower()
    assert response["WWW-Authenticate"].startswith("Token")


def test_bad_token(anon_api: APIClient) -> None:
    anon_api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(anon_api.get("/api/v1/workflows/"), 401, "AUTHENTICATION_FAILED")


def test_permission_denied_for_non_staff(make_user: Any) -> None:
    client = APIClient()
    client.force_authenticate(make_user("agent"))
    assert_error(client.get("/api/v1/workflows/"), 403, "PERMISSION_DENIED")


def test_unsupported_media_type(api: APIClient) -> None:
    response = api.post("/api/v1/events/", data="type=x", content_type="text/plain")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_validation_error_has_field_paths(api: APIClient) -> None:
    response = api.post("/api/v1/events/", {"type": "Not A Type", "payload": []}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["fields"]) == {"type", "payload"}


@override_settings(API_MAX_BODY_BYTES=100)
def test_body_too_large(api: APIClient) -> None:
    response = api.post(
        "/api/v1/events/", {"type": "deal.won", "payload": {"x": "y" * 200}}, format="json"
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_throttled_answers_429_rate_limited(api: APIClient, settings: Any) -> None:
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "events": "2/min"}
    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        for _ in range(2):
            assert (
                api.post("/api/v1/events/", {"type": "deal.won"}, format="json").status_code == 202
            )
        response = api.post("/api/v1/events/", {"type": "deal.won"}, format="json")
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original
        cache.clear()
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) > 0


def test_conflict_and_unprocessable_render_in_the_same_shape(api: APIClient) -> None:
    from workflows.services import workflow_save

    workflow = workflow_save(
        document={
            "slug": "w",
            "name": "W",
            "triggers": [{"event_type": "x.y"}],
            "steps": [{"key": "wait", "type": "delay", "config": {"for": "1 day"}}],
        }
    )
    response = api.post(f"/api/v1/workflows/{workflow.pk}/execute/", {"payload": {}}, format="json")
    assert response.status_code == 202
    run_id = response.json()["id"]
    response = api.post(f"/api/v1/runs/{run_id}/resume/")
    error = assert_error(response, 409, "INVALID_RUN_STATE")
    assert error["status"] == "pending"

    first = api.post(
        "/api/v1/events/",
        {"type": "deal.won", "payload": {"a": 1}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert first.status_code == 202
    response = api.post(
        "/api/v1/events/",
        {"type": "deal.won", "payload": {"a": 2}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert_error(response, 422, "IDEMPOTENCY_KEY_REUSED")
