"""Every built-in type of this issue in a dry run (``POST /api/v1/workflows/<id>/simulate/``).

Given a workflow with one step of each type, real SMTP and HTTP servers listening and a
media folder of its own, when it is simulated, then each step's config is rendered (with
the type's escaping, secrets masked) and described, and nothing happens: no mail reaches
the SMTP server or the outbox, no request reaches the HTTP server, and no notification,
export row, file or run is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automation.models import ActionRun, EmailTemplate, Export, Run
from automation.secrets import secret_set
from crm.models import Lead
from tasks_inbox.models import Notification
from tests.step_servers import smtp_server, webhook_receiver
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db

NAME = "Acme <b>&</b>"


def test_dry_runs_render_and_have_no_side_effects(
    api: Any, settings: Any, tmp_path: Path, make_user: Any
) -> None:
    ann = make_user("ann")
    Lead.objects.create(company_name="Ann's", owner=ann)
    Lead.objects.create(company_name="Not Ann's")
    EmailTemplate.objects.create(
        name="welcome",
        subject="Welcome {{company}}",
        text_body="Hi {{company}}",
        html_body="<p>{{company}}</p>",
    )
    secret_set(name="API_TOKEN", value="real-token-value")
    secret_set(name="HOOK_KEY", value="whsec_" + "A" * 44)
    with smtp_server() as smtp, webhook_receiver() as receiver:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.MEDIA_ROOT = tmp_path
        settings.FLOWDESK = {**settings.FLOWDESK, "WEBHOOK_ALLOW_HOSTS": ["127.0.0.1"]}
        workflow = workflow_save(
            document={
                "slug": "all-types",
                "name": "All types",
                "triggers": [{"event_type": "crm.check"}],
                "steps": [
                    {
                        "key": "templated_mail",
                        "type": "send_email",
                        "config": {
                            "to": "{{email}}",
                            "template": "welcome",
                            "variables": {"company": "{{name}}"},
                        },
                    },
                    {
                        "key": "inline_mail",
                        "type": "send_email",
                        "config": {
                            "to": ["{{email}}"],
                            "subject": "About {{name}}",
                            "body": "{{name}}",
                            "html_body": "<p>{{name}}</p>",
                        },
                    },
                    {
                        "key": "in_app",
                        "type": "send_notification",
                        "config": {
                            "recipient": "ann",
                            "message": "Lead {{name}}",
                            "link": "/leads/{{id}}",
                        },
                    },
                    {
                        "key": "by_mail",
                        "type": "send_notification",
                        "config": {
                            "recipient": "ann",
                            "message": "Lead {{name}}",
                            "notification_type": "email",
                        },
                    },
                    {
                        "key": "hook",
                        "type": "call_webhook",
                        "config": {
                            "url": f"{receiver.url}/in",
                            "signing_secret": "HOOK_KEY",
                            "headers": {"Authorization": "Bearer {{secrets.API_TOKEN}}"},
                            "body": {"id": "{{id}}", "name": "{{name}}"},
                        },
                    },
                    {
                        "key": "export",
                        "type": "enqueue_export",
                        "config": {
                            "entity_type": "lead",
                            "filters": {"status": "new"},
                            "email_to": "{{email}}",
                        },
                    },
                ],
            }
        )
        with CaptureQueriesContext(connection) as queries:
            response = api.post(
                f"/api/v1/workflows/{workflow.pk}/simulate/",
                {
                    "event_type": "crm.check",
                    "payload": {
                        "id": 7,
                        "name": NAME,
                        "email": "ann@example.com",
                        "actor": {"id": ann.pk},
                    },
                },
                format="json",
            )
        assert response.status_code == 200, response.content
        # Not even a write that the simulation's rollback would undo.
        writes = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        ]
        assert writes == []
        steps = {step["key"]: step for step in response.json()["steps"]}

        assert smtp.messages == [] and mail.outbox == []
        assert receiver.requests == []
    assert {key: step["status_if_run"] for key, step in steps.items()} == dict.fromkeys(
        steps, "completed"
    ), {k: s.get("error") for k, s in steps.items()}
    assert not Notification.objects.exists() and not Export.objects.exists()
    assert not Run.objects.exists() and not ActionRun.objects.exists()
    assert list(tmp_path.iterdir()) == []

    templated = steps["templated_mail"]["dry_run"]
    assert (templated["subject"], templated["text_body"], templated["html_body"]) == (
        f"Welcome {NAME}",
        f"Hi {NAME}",
        "<p>Acme &lt;b&gt;&amp;&lt;/b&gt;</p>",
    )
    inline = steps["inline_mail"]
    assert inline["rendered_config"]["html_body"] == "<p>Acme &lt;b&gt;&amp;&lt;/b&gt;</p>"
    assert inline["dry_run"]["to"] == ["ann@example.com"]
    assert steps["in_app"]["dry_run"] == {
        "would": "send an in_app notification",
        "notification_type": "in_app",
        "message": f"Lead {NAME}",
        "link": "/leads/7",
        "user_id": ann.pk,
    }
    assert steps["by_mail"]["dry_run"]["to"] == [ann.email]
    hook = steps["hook"]["dry_run"]
    assert hook["would"] == f"POST {receiver.url}/in"
    assert hook["body"] == {"id": 7, "name": NAME}
    assert hook["headers"]["Authorization"] == "Bearer ********"
    assert "real-token-value" not in response.content.decode()
    export = steps["export"]["dry_run"]
    assert (export["rows"], export["visible_to"], export["email_to"]) == (
        1,
        "ann",
        ["ann@example.com"],
    )
