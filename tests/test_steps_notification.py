"""send_notification: in-app rows for the inbox (once per step), or an email.

Given a recipient named by id, username or email, when the step runs, then exactly one
Notification is stored for that user (even when the step is delivered twice), links are
only site paths or http(s) URLs, and the email variant goes through a real SMTP server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from automation import services
from automation.models import StepStatus
from tasks_inbox.models import Notification
from tests.step_servers import SMTPSink, execute, one_step_workflow, smtp_server, step_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(settings: Any) -> Iterator[SMTPSink]:
    with smtp_server() as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = sink.port
        settings.SITE_URL = "https://flowdesk.example"
        yield sink


@pytest.mark.parametrize("recipient", ["{{owner.id}}", "{{owner.username}}", "{{owner.email}}"])
def test_in_app_notification_for_id_username_or_email(
    drain: Any, make_user: Any, recipient: str
) -> None:
    ann = make_user("ann")
    make_user("bob")
    workflow = one_step_workflow(
        "n",
        "send_notification",
        {
            "recipient": recipient,
            "message": "New qualified lead: {{lead.company_name}}",
            "link": "/leads/{{lead.id}}",
            "notification_type": "in_app",
        },
    )
    run = execute(
        workflow,
        {
            "owner": {"id": ann.pk, "username": "ann", "email": ann.email},
            "lead": {"id": 7, "company_name": "Acme <b>"},
        },
    )
    drain()
    step = step_of(run)
    assert step.status == StepStatus.COMPLETED, step.error
    [notification] = Notification.objects.all()
    assert notification.recipient == ann
    assert notification.message == "New qualified lead: Acme <b>"
    assert notification.link == "/leads/7"
    assert notification.read_at is None and notification.action_run_id == step.pk
    assert step.output == {
        "notification_type": "in_app",
        "notification_id": notification.pk,
        "recipient_id": ann.pk,
        "created": True,
    }


def test_a_redelivered_step_stores_one_notification(drain: Any, make_user: Any) -> None:
    make_user("ann")
    run = execute(
        one_step_workflow("n", "send_notification", {"recipient": "ann", "message": "hello"})
    )
    drain()
    step = step_of(run)
    type(step).objects.filter(pk=step.pk).update(status=StepStatus.PENDING, finished_at=None)
    run.__class__.objects.filter(pk=run.pk).update(status="running")
    services.step_execute(action_run_id=step.pk)
    step.refresh_from_db()
    assert step.status == StepStatus.COMPLETED and step.attempts == 2
    assert step.output["created"] is False
    assert Notification.objects.count() == 1


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"recipient": "nobody", "message": "m"}, "UNKNOWN_RECIPIENT"),
        ({"recipient": "ann", "message": "m", "link": "javascript:alert(1)"}, "INVALID_LINK"),
        ({"recipient": "ann", "message": "m", "link": "//evil.example/x"}, "INVALID_LINK"),
        ({"recipient": "ann", "message": "m", "link": "data:text/html,<script>"}, "INVALID_LINK"),
    ],
)
def test_refused_notifications_store_nothing(
    drain: Any, make_user: Any, config: dict[str, Any], code: str
) -> None:
    make_user("ann")
    run = execute(one_step_workflow("n", "send_notification", config))
    drain()
    step = step_of(run)
    assert (step.status, step.error_code) == (StepStatus.FAILED, code)
    assert Notification.objects.count() == 0


def test_inactive_user_is_not_a_recipient(drain: Any, make_user: Any) -> None:
    ann = make_user("ann")
    ann.is_active = False
    ann.save()
    run = execute(one_step_workflow("n", "send_notification", {"recipient": "ann", "message": "m"}))
    drain()
    assert step_of(run).error_code == "UNKNOWN_RECIPIENT"


def test_long_messages_are_cut_to_what_the_inbox_stores(drain: Any, make_user: Any) -> None:
    make_user("ann")
    execute(
        one_step_workflow("n", "send_notification", {"recipient": "ann", "message": "x" * 5000})
    )
    drain()
    message = Notification.objects.get().message
    assert len(message) == 1000 and message.endswith("\u2026")


def test_email_notification_goes_through_smtp(smtp: SMTPSink, drain: Any, make_user: Any) -> None:
    ann = make_user("ann")
    run = execute(
        one_step_workflow(
            "n",
            "send_notification",
            {
                "recipient": "{{who}}",
                "message": "Deal {{deal}} is yours",
                "link": "/deals/3",
                "notification_type": "email",
                "subject": "Deal assigned",
            },
        ),
        {"who": ann.pk, "deal": "Acme"},
    )
    drain()
    step = step_of(run)
    assert step.status == StepStatus.COMPLETED, step.error
    [mail] = smtp.messages
    assert mail.rcpt_tos == [ann.email]
    assert mail.message["Subject"] == "Deal assigned"
    assert mail.message["Message-ID"].startswith(f"<flowdesk-ar-{step.pk}@")
    assert mail.body("plain").strip() == "Deal Acme is yours\n\nhttps://flowdesk.example/deals/3"
    assert Notification.objects.count() == 0


def test_email_notification_to_a_plain_address(smtp: SMTPSink, drain: Any) -> None:
    execute(
        one_step_workflow(
            "n",
            "send_notification",
            {"recipient": "ops@example.com", "message": "Heads up", "notification_type": "email"},
        )
    )
    drain()
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["ops@example.com"]
