"""Request bodies through daphne as the Procfile runs it, now that twisted no longer parses
POST forms for daphne (``config.asgi_handler.daphne_without_form_parsing``): JSON, form
and multipart bodies all reach the application whole."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from automation.models import Event
from config.asgi_handler import daphne_without_form_parsing

pytestmark = pytest.mark.django_db(transaction=True)


def post(server: Any, token: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(
        f"{server.url}/api/v1/events/",
        data=body,
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": content_type},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_twisted_is_told_not_to_parse_forms() -> None:
    from daphne.http_protocol import WebRequest

    assert daphne_without_form_parsing()
    assert getattr(WebRequest.__init__, "without_form_parsing", False)


def test_json_form_and_multipart_bodies_reach_the_application(
    asgi_server: Any, make_user: Any
) -> None:
    token = Token.objects.create(user=make_user(superuser=True)).key
    as_json = json.dumps({"type": "body.json", "payload": {"n": 1}}).encode()
    assert post(asgi_server, token, as_json, "application/json") == 202
    assert post(asgi_server, token, b"type=body.form", "application/x-www-form-urlencoded") == 202
    boundary = "flowdesk-boundary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\n'
        f"body.multipart\r\n--{boundary}--\r\n"
    ).encode()
    assert post(asgi_server, token, multipart, f"multipart/form-data; boundary={boundary}") == 202
    assert sorted(Event.objects.values_list("type", flat=True)) == [
        "body.form",
        "body.json",
        "body.multipart",
    ]
    assert Event.objects.get(type="body.json").payload["payload"] == {"n": 1}
