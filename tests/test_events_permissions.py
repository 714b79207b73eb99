"""Who may post and read events (``StaffModelPermissions`` on ``/api/v1/events/``): staff
holding ``automation.add_event`` post, ``automation.view_event`` read; a permission granted
or taken away counts from the next request, the cached token lookup notwithstanding."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from automation.models import Event

pytestmark = pytest.mark.django_db

BODY = {"type": "perm.check", "payload": {"n": 1}}


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="automation", codename=codename)


def test_staff_post_only_while_they_hold_add_event(make_user: Any) -> None:
    user = make_user(staff=True)
    client = token_client(user)
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 403

    user.user_permissions.add(permission("add_event"))
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 202
    assert client.get("/api/v1/events/").status_code == 403  # reading needs view_event

    user.user_permissions.remove(permission("add_event"))
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 403
    assert Event.objects.filter(type="perm.check").count() == 1


def test_a_group_permission_counts_and_so_does_losing_the_group(make_user: Any) -> None:
    from django.contrib.auth.models import Group

    user = make_user(staff=True)
    group = Group.objects.create(name="event-writers")
    group.permissions.add(permission("add_event"), permission("view_event"))
    client = token_client(user)
    user.groups.add(group)
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 202
    assert client.get("/api/v1/events/").status_code == 200
    user.groups.remove(group)
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 403


def test_the_permission_is_not_enough_without_staff(make_user: Any) -> None:
    user = make_user()
    user.user_permissions.add(permission("add_event"), permission("view_event"))
    client = token_client(user)
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 403
    assert client.get("/api/v1/events/").status_code == 403


def test_a_user_who_loses_staff_is_refused_at_once(make_user: Any) -> None:
    user = make_user(staff=True)
    user.user_permissions.add(permission("add_event"))
    client = token_client(user)
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 202
    user.is_staff = False
    user.save()
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 403


def test_a_revoked_token_stops_working_at_once(make_user: Any) -> None:
    user = make_user(superuser=True)
    client = token_client(user)
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 202
    Token.objects.filter(user=user).delete()
    assert client.post("/api/v1/events/", BODY, format="json").status_code == 401
