"""The project's plumbing: health check, pages, admin, API docs, deploy checks, seeding."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_healthz_names_the_broker_when_it_is_down(client: Client, monkeypatch: Any) -> None:
    from config.celery import app

    # A port nothing listens on. Celery reads CELERY_BROKER_URL from the environment before
    # its own configuration, so both are pointed there.
    bad = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("CELERY_BROKER_URL", bad)
    monkeypatch.setattr(app.conf, "broker_url", bad)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"]["status"] == "down"
    assert "refused" in body["checks"]["broker"]["error"].lower()


@pytest.mark.django_db
def test_home_login_logout(client: Client, make_user: Any) -> None:
    assert client.get("/").status_code == 200
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="username"' in page.content
    make_user("kim", password="a-long-pass-1")
    response = client.post("/accounts/login/", {"username": "kim", "password": "a-long-pass-1"})
    assert response.status_code == 302
    assert client.get("/").context["user"].username == "kim"
    assert client.post("/accounts/logout/").status_code == 302
    assert not client.get("/").context["user"].is_authenticated


@pytest.mark.django_db
def test_admin_and_api_docs_render(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200
    for url in (
        "/admin/workflows/workflow/",
        "/admin/automation/run/",
        "/admin/automation/event/",
        "/admin/django_celery_beat/periodictask/",
    ):
        assert client.get(url).status_code == 200, url
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/workflows/",
        "/api/v1/workflows/{id}/simulate/",
        "/api/v1/events/",
        "/api/v1/runs/{id}/retry/",
    ):
        assert path in paths, path


@pytest.mark.django_db
def test_browsable_api(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    response = client.get("/api/v1/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and b"workflows" in response.content


@pytest.mark.django_db
def test_seed_demo_is_idempotent() -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from workflows.models import Workflow, WorkflowVersion

    call_command("seed_demo", "--quiet")
    counts = (
        get_user_model().objects.count(),
        Workflow.objects.count(),
        WorkflowVersion.objects.count(),
    )
    call_command("seed_demo", "--quiet")
    assert counts == (
        get_user_model().objects.count(),
        Workflow.objects.count(),
        WorkflowVersion.objects.count(),
    )
    demo = get_user_model().objects.get(username="demo")
    assert demo.is_staff and demo.check_password("demo-pass-2026")


def test_check_deploy_with_debug_off_only_asks_for_https(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "example.com",
        "FLOWDESK_VAR_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ids = set(re.findall(r"\(([a-z_]+\.[A-Z]\d+)\)", result.stdout + result.stderr))
    # Only what needs HTTPS in front (HSTS, SSL redirect) may remain.
    assert ids <= {"security.W004", "security.W008"}, result.stderr
