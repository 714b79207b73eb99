"""Fuzz the API from its own OpenAPI schema: bad input never gets a 500.

schemathesis generates requests (valid and invalid) for every operation of the schema and
sends them in-process to the WSGI app as an authenticated superuser.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def token(admin_user: Any) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=admin_user)[0].key


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Token {token}"},
                           checks=[not_a_server_error])
