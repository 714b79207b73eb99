"""Secrets: encrypted at rest, resolved from the database then the environment, written but
never shown by the admin, and masked wherever a step used them.

The end-to-end hunt for a planted value through a real worker is in test_secrets_leak.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client

from automation.actions import StepFailed
from automation.models import Secret, StepStatus
from automation.secrets import resolve_secret, secret_set
from tests.step_servers import execute, one_step_workflow, step_of

pytestmark = pytest.mark.django_db

VALUE = "s3cr3t-value-for-tests-0042"


def raw_column(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value_encrypted FROM automation_secret WHERE name = %s", [name])
        return str(cursor.fetchone()[0])


def test_value_is_encrypted_at_rest_and_resolves() -> None:
    secret_set(name="CRM_API_KEY", value=VALUE, description="CRM token")
    stored = raw_column("CRM_API_KEY")
    assert VALUE not in stored and stored.startswith("gAAAA")  # a Fernet token
    assert resolve_secret("CRM_API_KEY") == VALUE
    assert Secret.objects.get(name="CRM_API_KEY").description == "CRM token"


def test_database_first_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWDESK_SECRET_ONLY_ENV", "from-env")
    monkeypatch.setenv("FLOWDESK_SECRET_BOTH", "from-env")
    secret_set(name="BOTH", value="from-db")
    assert resolve_secret("ONLY_ENV") == "from-env"
    assert resolve_secret("BOTH") == "from-db"
    with pytest.raises(StepFailed) as missing:
        resolve_secret("NOWHERE")
    assert missing.value.code == "UNKNOWN_SECRET"


def test_keys_rotate_through_a_dedicated_key(settings: Any) -> None:
    settings.SECRET_KEY = "old-django-key-" + "x" * 40
    secret_set(name="ROTATED", value=VALUE)
    settings.FLOWDESK_SECRETS_KEY = "dedicated-secrets-key-" + "y" * 40
    assert resolve_secret("ROTATED") == VALUE  # still readable with the old key
    secret_set(name="ROTATED", value=VALUE)  # re-saved: now under the dedicated key
    settings.SECRET_KEY = "new-django-key-" + "z" * 40
    assert resolve_secret("ROTATED") == VALUE
    settings.FLOWDESK_SECRETS_KEY = "another-key-" + "w" * 40
    with pytest.raises(StepFailed) as unreadable:
        resolve_secret("ROTATED")
    assert unreadable.value.code == "UNREADABLE_SECRET"


def test_step_input_masks_the_secret_and_its_filtered_forms(drain: Any) -> None:
    secret_set(name="TOKEN", value=VALUE)
    run = execute(
        one_step_workflow(
            "masked",
            "call_webhook",
            {
                "url": "http://10.0.0.1/hook/{{secrets.TOKEN|upper}}",
                "headers": {"X-Token": "{{secrets.TOKEN}} / {{secrets.TOKEN|upper}}"},
            },
        )
    )
    drain()
    step = step_of(run)
    assert step.status == StepStatus.FAILED  # a private address; the error must be masked
    assert step.error_code == "UNSAFE_URL"
    assert step.input == {
        "url": "http://10.0.0.1/hook/********",
        "headers": {"X-Token": "******** / ********"},
    }
    assert VALUE.lower() not in step.error.lower() and "********" in step.error
    assert VALUE.lower() not in str(step.output).lower()


def test_a_missing_secret_fails_the_step_by_name(drain: Any) -> None:
    run = execute(
        one_step_workflow(
            "missing",
            "call_webhook",
            {"url": "http://10.0.0.1/", "headers": {"X-Token": "{{secrets.NOT_THERE}}"}},
        )
    )
    drain()
    step = step_of(run)
    assert (step.status, step.error_code) == (StepStatus.FAILED, "UNKNOWN_SECRET")
    assert "NOT_THERE" in step.error


def test_secret_names_are_identifiers() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as invalid:
        secret_set(name="not a name", value="v")
    assert "name" in invalid.value.message_dict


# --- admin: write-only ----------------------------------------------------------------------


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_admin_writes_the_value_and_never_shows_it(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/automation/secret/add/",
        {"name": "PARTNER_TOKEN", "value": VALUE, "description": "partner API"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    secret = Secret.objects.get(name="PARTNER_TOKEN")
    assert secret.get_value() == VALUE and VALUE not in raw_column("PARTNER_TOKEN")

    pages = [
        f"/admin/automation/secret/{secret.pk}/change/",
        "/admin/automation/secret/",
        f"/admin/automation/secret/{secret.pk}/history/",
        "/admin/automation/secret/add/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert VALUE not in html and secret.value_encrypted not in html, page
    change_page = admin_client.get(pages[0]).content.decode()
    assert 'type="password"' in change_page and 'name="value"' in change_page

    # Saving without a value keeps it; with one, replaces it.
    response = admin_client.post(pages[0], {"value": "", "description": "still partner"})
    assert response.status_code == 302
    secret.refresh_from_db()
    assert secret.get_value() == VALUE and secret.description == "still partner"
    admin_client.post(pages[0], {"value": "replaced-value", "description": "d"})
    secret.refresh_from_db()
    assert secret.get_value() == "replaced-value"


def test_admin_needs_a_value_for_a_new_secret(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/automation/secret/add/", {"name": "EMPTY", "value": "", "description": ""}
    )
    assert response.status_code == 200
    assert "A new secret needs a value." in response.content.decode()
    assert not Secret.objects.filter(name="EMPTY").exists()
