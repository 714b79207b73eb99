"""send_email through a real SMTP server (aiosmtpd on loopback), driven in this process.

Given a named template or an inline body, when the step runs, then the server receives
the subject, both bodies and the recipients as rendered, with values escaped in HTML,
line breaks refused in headers, and the ActionRun's id in the Message-ID.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from automation import services
from automation.models import EmailTemplate, StepStatus
from tests.step_servers import SMTPSink, execute, free_port, one_step_workflow, smtp_server, step_of

pytestmark = pytest.mark.django_db

INJECTION = '<script>alert("x")</script> & <b>bold</b>'


@pytest.fixture
def smtp(settings: Any) -> Iterator[SMTPSink]:
    with smtp_server() as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = sink.port
        settings.DEFAULT_FROM_EMAIL = "flowdesk@flowdesk.test"
        yield sink


def welcome_template() -> EmailTemplate:
    template = EmailTemplate(
        name="welcome",
        subject="Welcome, {{company}} ({{lead.status|upper}})",
        text_body="Hello {{lead.contact_name}},\nyour account manager is {{manager}}.",
        html_body="<p>Hello <em>{{lead.contact_name}}</em>,</p><p>{{manager}}</p>",
        description="company, manager: text",
    )
    template.full_clean()
    template.save()
    return template


def test_template_email_arrives_as_rendered_with_html_escaped(smtp: SMTPSink, drain: Any) -> None:
    welcome_template()
    workflow = one_step_workflow(
        "mail",
        "send_email",
        {
            "to": "{{lead.email}}",
            "cc": ["Boss <boss@example.com>"],
            "bcc": "audit@example.com",
            "template": "welcome",
            "variables": {"company": "{{lead.company_name}}", "manager": "Mia <mia@x.test>"},
        },
    )
    run = execute(
        workflow,
        {
            "lead": {
                "email": "ann@example.com",
                "company_name": "Acme & Co",
                "contact_name": INJECTION,
                "status": "new",
            }
        },
    )
    drain()

    step = step_of(run)
    assert step.status == StepStatus.COMPLETED, step.error
    [mail] = smtp.messages
    message = mail.message
    assert sorted(mail.rcpt_tos) == ["ann@example.com", "audit@example.com", "boss@example.com"]
    assert message["To"] == "ann@example.com"
    assert message["Cc"] == "Boss <boss@example.com>"
    assert message["Bcc"] is None  # blind copies are only in the envelope
    assert message["Subject"] == "Welcome, Acme & Co (NEW)"
    assert message["Message-ID"] == f"<flowdesk-ar-{step.pk}@flowdesk.test>"
    assert mail.body("plain").rstrip("\n") == (
        f"Hello {INJECTION},\nyour account manager is Mia <mia@x.test>."
    )
    html = mail.body("html")
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert (
        "<p>Hello <em>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; "
        "&lt;b&gt;bold&lt;/b&gt;</em>,</p><p>Mia &lt;mia@x.test&gt;</p>"
    ) in html
    assert step.output["message_id"] == message["Message-ID"]
    assert step.output["to"] == ["ann@example.com"] and step.output["bcc_count"] == 1
    assert step.progress["email_sent"]["message_id"] == message["Message-ID"]


def test_inline_body_and_html_body(smtp: SMTPSink, drain: Any) -> None:
    workflow = one_step_workflow(
        "inline",
        "send_email",
        {
            "to": ["a@example.com", "b@example.com"],
            "subject": "Deal {{deal.name}} won",
            "body": "Amount: {{deal.amount}}\n{{deal.name}}",
            "html_body": "<h1>{{deal.name}}</h1><p>{{deal.amount}}</p>",
        },
    )
    execute(workflow, {"deal": {"name": INJECTION, "amount": "1200.50"}})
    drain()
    [mail] = smtp.messages
    assert mail.message["Subject"] == f"Deal {INJECTION} won"
    assert mail.body("plain").rstrip("\n") == f"Amount: 1200.50\n{INJECTION}"
    assert mail.body("html").startswith(
        "<h1>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;</h1>"
    )
    assert sorted(mail.rcpt_tos) == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(
    ("config", "payload", "code"),
    [
        (
            {"to": "ann@example.com", "subject": "Hi {{name}}", "body": "x"},
            {"name": "x\r\nBcc: victim@example.com"},
            "TEMPLATE_HEADER_INJECTION",
        ),
        (
            {"to": "{{address}}", "subject": "Hi", "body": "x"},
            {"address": "ann@example.com\nBcc: victim@example.com"},
            "TEMPLATE_HEADER_INJECTION",
        ),
        (
            {"to": "{{address}}", "subject": "Hi", "body": "x"},
            {"address": "not an address"},
            "INVALID_ADDRESS",
        ),
        (
            {"to": "ann@example.com", "cc": ["{{address}}"], "subject": "Hi", "body": "x"},
            {"address": "a@b@c"},
            "INVALID_ADDRESS",
        ),
        # A template named outright is refused on save; a templated name is checked once
        # rendered, with the rest of the config, before anything is sent.
        ({"to": "ann@example.com", "template": "{{tpl}}"}, {"tpl": "missing"}, "INVALID_CONFIG"),
    ],
)
def test_refused_inputs_send_nothing(
    smtp: SMTPSink, drain: Any, config: dict[str, Any], payload: dict[str, Any], code: str
) -> None:
    run = execute(one_step_workflow("bad", "send_email", config), payload)
    drain()
    step = step_of(run)
    assert step.status == StepStatus.FAILED
    assert step.error_code == code, step.error
    assert step.attempts <= 1
    assert smtp.messages == []


def test_template_subject_with_a_line_break_is_refused(smtp: SMTPSink, drain: Any) -> None:
    welcome_template()
    run = execute(
        one_step_workflow(
            "t",
            "send_email",
            {
                "to": "ann@example.com",
                "template": "welcome",
                "variables": {"company": "Evil\r\nBcc: victim@example.com", "manager": "m"},
            },
        ),
        {"lead": {"contact_name": "Ann", "status": "new"}},
    )
    drain()
    step = step_of(run)
    assert (step.status, step.error_code) == (StepStatus.FAILED, "TEMPLATE_HEADER_INJECTION")
    assert "subject" in step.error
    assert smtp.messages == []


def test_a_redelivered_step_does_not_send_again(smtp: SMTPSink, drain: Any) -> None:
    """The worker dies after the server accepted the message, before the step was recorded:
    the step runs again and finds its mark instead of sending a second message."""
    run = execute(
        one_step_workflow(
            "once", "send_email", {"to": "ann@example.com", "subject": "Once", "body": "only once"}
        )
    )
    drain()
    step = step_of(run)
    assert len(smtp.messages) == 1
    type(step).objects.filter(pk=step.pk).update(status=StepStatus.PENDING, finished_at=None)
    run.__class__.objects.filter(pk=run.pk).update(status="running")
    services.step_execute(action_run_id=step.pk)
    step.refresh_from_db()
    assert step.status == StepStatus.COMPLETED and step.attempts == 2
    assert step.output["already_sent"] is True
    assert len(smtp.messages) == 1


def test_mail_server_down_is_retried(settings: Any, drain: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there
    run = execute(
        one_step_workflow(
            "down", "send_email", {"to": "ann@example.com", "subject": "s", "body": "b"}
        )
    )
    drain()
    step = step_of(run)
    assert (step.status, step.error_code) == (StepStatus.PENDING, "EMAIL_UNAVAILABLE")
    assert step.wake_at is not None and step.attempts == 1


def test_config_must_name_a_template_or_a_body() -> None:
    from workflows.definition import validate_definition

    document = {
        "slug": "x",
        "name": "x",
        "triggers": [],
        "steps": [
            {"key": "a", "type": "send_email", "config": {"to": "a@example.com"}},
            {
                "key": "b",
                "type": "send_email",
                "config": {"to": "a@example.com", "template": "t", "body": "b"},
            },
            {"key": "c", "type": "send_email", "config": {"to": "a@example.com", "body": "b"}},
        ],
    }
    issues = {i.path: i.message for i in validate_definition(document)}
    assert issues["steps[0].config.body"].startswith("give 'template'")
    assert issues["steps[1].config.body"] == "give either 'template' or 'body', not both"
    assert issues["steps[2].config.subject"] == "required with an inline 'body'"
