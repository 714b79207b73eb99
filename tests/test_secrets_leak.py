"""A secret used in a webhook header, hunted everywhere it could leak.

Given a secret stored in the database and a webhook step that sends it in two headers
(as is, and through a filter) to a receiver that echoes it back in its answers (a 503,
then a 200), when a real worker runs the step, then the receiver got the value, and the
value appears in no ActionRun or Run field, no event, no line of the worker's log or of
this process's log, no API response and no admin page.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import pytest
from django.test import Client

from automation.models import ActionRun, Event, Run, RunStatus, Secret
from automation.secrets import secret_set
from tests.conftest import wait_for
from tests.step_servers import Answer, execute, one_step_workflow, step_of, webhook_receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_planted_secret_appears_nowhere(
    start_worker: Any, api: Any, admin_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    planted = "pl4nted-" + secrets.token_hex(16)
    forms = [planted, planted.upper()]
    secret_set(name="CRM_API_KEY", value=planted, description="CRM partner token")
    worker = start_worker(
        "leak", concurrency=1, FLOWDESK_WEBHOOK_ALLOW_HOSTS="127.0.0.1", LOG_LEVEL="DEBUG"
    )
    with webhook_receiver() as receiver:
        receiver.script = [Answer(status=503, echo_header="authorization")]
        receiver.default = Answer(status=200, echo_header="x-key")
        workflow = one_step_workflow(
            "leak",
            "call_webhook",
            {
                "url": receiver.url,
                "headers": {
                    "Authorization": "Bearer {{secrets.CRM_API_KEY}}",
                    "X-Key": "{{secrets.CRM_API_KEY|upper}}",
                },
                "body": {"lead": "{{lead}}"},
            },
            retry={"max_attempts": 3, "backoff_seconds": 0.5, "max_backoff_seconds": 1},
        )
        run = execute(workflow, {"lead": 7})
        run = wait_for(
            lambda: Run.objects.filter(pk=run.pk, status=RunStatus.COMPLETED).first(),
            timeout=60,
            message="the webhook run to complete",
        )

    # The value was really used, and came back in the receiver's answers.
    assert [r.headers["authorization"] for r in receiver.requests] == [f"Bearer {planted}"] * 2
    assert receiver.requests[1].headers["x-key"] == planted.upper()
    step = step_of(run)
    assert step.attempts == 2
    assert step.input["headers"] == {"Authorization": "Bearer ********", "X-Key": "********"}
    assert step.output["response"]["json"] == {"echo": "********"}
    assert step.output["response"]["headers"]["x-echo"] == "********"

    client = Client()
    client.force_login(admin_user)
    secret = Secret.objects.get(name="CRM_API_KEY")
    places: dict[str, str] = {
        "action runs": json.dumps(list(ActionRun.objects.filter(run=run).values()), default=str),
        "run": json.dumps(list(Run.objects.filter(pk=run.pk).values()), default=str),
        "events": json.dumps(list(Event.objects.values()), default=str),
        "secret row": json.dumps(list(Secret.objects.values()), default=str),
        "worker log": worker.log(),
        "test log": caplog.text,
    }
    for url in (
        f"/api/v1/runs/{run.pk}/",
        "/api/v1/runs/",
        "/api/v1/events/",
        f"/api/v1/runs/{run.pk}/history/",
    ):
        response = api.get(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 200, url  # a 404 would scan an error page
        places[f"API {url}"] = response.content.decode()
    for url in (
        "/admin/automation/secret/",
        f"/admin/automation/secret/{secret.pk}/change/",
        f"/admin/automation/secret/{secret.pk}/history/",
        f"/admin/automation/run/{run.pk}/change/",
        "/admin/automation/run/",
        f"/admin/automation/event/{run.event_id}/change/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        places[f"admin {url}"] = response.content.decode()
    places["test log"] = caplog.text  # again, after the API and admin requests

    assert "webhook POST" in places["worker log"]  # the log was captured at all
    assert "Bearer ********" in places[f"API /api/v1/runs/{run.pk}/"]
    leaks = [where for where, text in places.items() if any(form in text for form in forms)]
    assert leaks == [], f"the planted secret leaked into: {leaks}"
