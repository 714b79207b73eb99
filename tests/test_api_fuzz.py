"""Fuzz the API from its own OpenAPI schema: bad input never gets a 500, and every error
answers in the one envelope.

schemathesis generates requests (valid and invalid) for every operation of the schema and
sends them in-process to the WSGI app as an authenticated superuser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answer is ``{"error": {"code": "UPPER_CASE", "message": "...", ...}}``, with
    ``fields`` (when given) mapping paths to lists of messages."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("code"), str) and ERROR_CODE.match(error["code"]), error
    assert isinstance(error.get("message"), str) and error["message"], error
    fields = error.get("fields")
    if fields is not None:
        assert isinstance(fields, dict), error
        for path, messages in fields.items():
            assert isinstance(path, str), error
            assert isinstance(messages, list) and all(isinstance(m, str) for m in messages), error
    return True


@pytest.fixture
def keep_connection() -> Iterator[None]:
    """Requests go straight to the WSGI app, whose request signals would close the test's
    database connection mid-transaction; Django's own test client unhooks them the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(admin_user: Any, keep_connection: None) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=admin_user)[0].key


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Token {token}"},
        checks=[not_a_server_error, error_envelope],
    )
