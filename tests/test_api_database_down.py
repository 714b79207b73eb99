"""The API while its database cannot be reached answers 503 DATABASE_UNAVAILABLE with
Retry-After (a restart or failover), not a 500; and a revoked API token is refused at once
by the process that revoked it, though token lookups are cached."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import free_port


@pytest.fixture
def unreachable_database(transactional_db: Any) -> Iterator[None]:
    """Point the default connection at a loopback port nothing listens on, then back."""
    saved = connection.settings_dict
    connection.close()
    connection.settings_dict = {**saved, "HOST": "127.0.0.1", "PORT": str(free_port())}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict = saved


@pytest.mark.django_db(transaction=True)
def test_a_request_while_the_database_is_down_answers_503(
    api: APIClient, unreachable_database: None
) -> None:
    response = api.post("/api/v1/events/", {"type": "deal.won", "payload": {}}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert response["Retry-After"] == "5"

    response = api.get("/api/v1/tasks/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_again_once_the_database_is_back(api: APIClient) -> None:
    saved = connection.settings_dict
    connection.close()
    connection.settings_dict = {**saved, "HOST": "127.0.0.1", "PORT": str(free_port())}
    try:
        assert api.get("/api/v1/runs/").status_code == 503
    finally:
        connection.close()
        connection.settings_dict = saved
    assert api.get("/api/v1/runs/").status_code == 200


@pytest.mark.django_db
def test_a_deleted_token_is_refused_at_once(make_user: Any) -> None:
    user = make_user("cached", superuser=True)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/runs/").status_code == 200  # the lookup is cached now
    token.delete()
    response = client.get("/api/v1/runs/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"


@pytest.mark.django_db
def test_a_deactivated_user_is_refused_at_once_and_permissions_count_at_once(
    make_user: Any,
) -> None:
    from django.contrib.auth.models import Permission

    user = make_user("staffer", staff=True)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/runs/").status_code == 403  # no view_run yet
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    assert client.get("/api/v1/runs/").status_code == 200  # granted: counts at once
    user.is_active = False
    user.save()
    assert client.get("/api/v1/runs/").status_code == 401
