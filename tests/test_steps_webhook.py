"""call_webhook against a real HTTP server on loopback, driven in this process.

Given a step with templated headers and a JSON body, when it runs, then the receiver gets
the body as a JSON structure (never string-pasted) and the headers as rendered, signed the
Standard Webhooks way; private targets are refused before any connection (a canary
listener counts them), and redirects are not followed. Retries, dead letters and a killed
worker are in test_steps_webhook_worker.py.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from automation.models import StepStatus
from automation.secrets import secret_set
from tests.step_servers import (
    Answer,
    Canary,
    WebhookReceiver,
    canary_listener,
    execute,
    one_step_workflow,
    step_of,
    webhook_receiver,
)

pytestmark = pytest.mark.django_db

SIGNING_KEY = "whsec_" + base64.b64encode(os.urandom(32)).decode()
HOSTILE_NAME = 'Acme", "admin": true, "x": "'


@pytest.fixture
def receiver(settings: Any) -> Iterator[WebhookReceiver]:
    settings.FLOWDESK = {**settings.FLOWDESK, "WEBHOOK_ALLOW_HOSTS": ["127.0.0.1"]}
    with webhook_receiver() as server:
        yield server


@pytest.fixture
def canary(settings: Any) -> Iterator[Canary]:
    settings.FLOWDESK = {**settings.FLOWDESK, "WEBHOOK_ALLOW_HOSTS": []}
    with canary_listener() as listener:
        yield listener


def hook_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": url,
        "method": "POST",
        "signing_secret": "HOOK_KEY",
        "headers": {"X-Lead": "{{lead.company_name}}", "Authorization": "Bearer {{token}}"},
        "body": {
            "event": "lead.qualified",
            "lead": {
                "id": "{{lead.id}}",
                "name": "{{lead.company_name}}",
                "revenue": "{{lead.annual_revenue}}",
                "vip": "{{lead.vip}}",
            },
            "summary": "{{lead.company_name}} ({{lead.status}})",
            "tags": ["{{lead.status}}", "crm"],
        },
        **extra,
    }


PAYLOAD = {
    "token": "t0k3n",
    "lead": {
        "id": 42,
        "company_name": HOSTILE_NAME,
        "annual_revenue": "2500000.00",
        "vip": True,
        "status": "qualified",
    },
}


def test_body_headers_and_signature_as_rendered(receiver: WebhookReceiver, drain: Any) -> None:
    secret_set(name="HOOK_KEY", value=SIGNING_KEY)
    run = execute(
        one_step_workflow("hook", "call_webhook", hook_config(f"{receiver.url}/hooks/crm?x=1")),
        PAYLOAD,
    )
    drain()

    step = step_of(run)
    assert step.status == StepStatus.COMPLETED, step.error
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/crm?x=1")
    assert request.json() == {
        "event": "lead.qualified",
        "lead": {"id": 42, "name": HOSTILE_NAME, "revenue": "2500000.00", "vip": True},
        "summary": f"{HOSTILE_NAME} (qualified)",
        "tags": ["qualified", "crm"],
    }
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-lead"] == HOSTILE_NAME and headers["authorization"] == "Bearer t0k3n"
    assert headers["webhook-id"] == f"flowdesk-ar-{step.pk}"
    assert Webhook(SIGNING_KEY).verify(request.body, headers) == request.json()
    assert headers["webhook-signature"].startswith("v1,")
    assert step.output["status"] == 200 and step.output["response"]["json"] == {"ok": True}
    assert step.output["webhook_id"] == headers["webhook-id"]
    assert step.progress["delivered"]["status"] == 200


def test_a_tampered_body_does_not_verify(receiver: WebhookReceiver, drain: Any) -> None:
    from standardwebhooks.webhooks import WebhookVerificationError

    secret_set(name="HOOK_KEY", value=SIGNING_KEY)
    execute(one_step_workflow("hook", "call_webhook", hook_config(receiver.url)), PAYLOAD)
    drain()
    [request] = receiver.requests
    with pytest.raises(WebhookVerificationError):
        Webhook(SIGNING_KEY).verify(request.body.replace(b"crm", b"CRM"), request.headers)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)


def test_unsigned_without_a_signing_secret(receiver: WebhookReceiver, drain: Any) -> None:
    execute(one_step_workflow("hook", "call_webhook", {"url": receiver.url, "method": "GET"}))
    drain()
    [request] = receiver.requests
    assert request.method == "GET" and request.body == b""
    assert request.headers["webhook-id"].startswith("flowdesk-ar-")
    assert "webhook-signature" not in request.headers


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("not-a-key", "INVALID_SIGNING_SECRET"),
        ("whsec_%%%", "INVALID_SIGNING_SECRET"),
        (None, "UNKNOWN_SECRET"),
    ],
)
def test_a_bad_signing_secret_sends_nothing(
    receiver: WebhookReceiver, drain: Any, value: str | None, code: str
) -> None:
    if value is not None:
        secret_set(name="HOOK_KEY", value=value)
    run = execute(one_step_workflow("hook", "call_webhook", hook_config(receiver.url)), PAYLOAD)
    drain()
    step = step_of(run)
    assert (step.status, step.error_code) == (StepStatus.FAILED, code)
    assert receiver.requests == []
    if value is not None:
        assert value not in step.error


def test_client_errors_fail_at_once_keeping_the_response(
    receiver: WebhookReceiver, drain: Any
) -> None:
    receiver.default = Answer(
        status=422, body=b'{"error": "bad lead"}', headers={"Content-Type": "application/json"}
    )
    run = execute(
        one_step_workflow("hook", "call_webhook", {"url": receiver.url, "body": {"a": 1}})
    )
    drain()
    step = step_of(run)
    assert (step.status, step.error_code, step.attempts) == (
        StepStatus.FAILED,
        "WEBHOOK_REJECTED",
        1,
    )
    assert step.output["response"]["status"] == 422
    assert step.output["response"]["json"] == {"error": "bad lead"}
    assert len(receiver.requests) == 1


def test_header_injection_is_refused(receiver: WebhookReceiver, drain: Any) -> None:
    run = execute(
        one_step_workflow(
            "hook", "call_webhook", {"url": receiver.url, "headers": {"X-Name": "{{name}}"}}
        ),
        {"name": "x\r\nX-Admin: yes"},
    )
    drain()
    step = step_of(run)
    assert (step.status, step.error_code) == (StepStatus.FAILED, "TEMPLATE_HEADER_INJECTION")
    assert receiver.requests == []


def test_reserved_headers_cannot_be_set_by_config() -> None:
    from workflows.definition import validate_definition

    issues = validate_definition(
        {
            "slug": "x",
            "name": "x",
            "steps": [
                {
                    "key": "a",
                    "type": "call_webhook",
                    "config": {"url": "https://example.com", "headers": {"Webhook-Id": "forged"}},
                }
            ],
        }
    )
    assert (
        "steps[0].config.headers.Webhook-Id",
        "RESERVED_HEADER",
        "header 'Webhook-Id' is set by the step itself",
    ) in [(i.path, i.code, i.message) for i in issues]


# --- SSRF through the step ---------------------------------------------------------------


def _loopback_name() -> str | None:
    """A host name other than localhost that this machine resolves to a loopback address."""
    for name in (socket.gethostname(), "runsc", "vm", "ip6-localhost"):
        try:
            infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        if name != "localhost" and all(
            info[4][0].startswith("127.") or info[4][0] == "::1" for info in infos
        ):
            return name
    return None


def ssrf_targets(port: int) -> list[str]:
    targets = [
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://[::1]:{port}/",
        f"http://2130706433:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[0:0:0:0:0:ffff:7f00:1]:{port}/",
        f"http://0.0.0.0:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.5/",
        "http://172.16.3.4:8080/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        f"https://127.0.0.1:{port}/",
        f"ftp://127.0.0.1:{port}/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_x",
    ]
    name = _loopback_name()
    if name:
        targets.append(f"http://{name}:{port}/")
    return targets


def test_private_targets_are_refused_without_a_connection(canary: Canary, drain: Any) -> None:
    targets = ssrf_targets(canary.port)
    workflow = one_step_workflow("ssrf", "call_webhook", {"url": "{{target}}", "body": {"x": 1}})
    runs = [execute(workflow, {"target": url}) for url in targets]
    drain()
    for url, run in zip(targets, runs, strict=True):
        step = step_of(run)
        assert (step.status, step.error_code, step.attempts) == (
            StepStatus.FAILED,
            "UNSAFE_URL",
            1,
        ), (url, step.error)
        assert step.error.startswith("refused to call ")
        assert (
            "webhooks may only call public addresses" in step.error
            or "is not allowed; use http or https" in step.error
        ), step.error
    assert canary.connections == 0


def test_redirects_are_not_followed(receiver: WebhookReceiver, drain: Any) -> None:
    with canary_listener() as canary:
        receiver.default = Answer(
            status=302, headers={"Location": f"http://localhost:{canary.port}/"}
        )
        run = execute(one_step_workflow("redirect", "call_webhook", {"url": receiver.url}))
        drain()
        step = step_of(run)
        assert (step.status, step.error_code) == (StepStatus.FAILED, "WEBHOOK_REDIRECT")
        assert step.output["response"]["headers"]["location"].endswith(f":{canary.port}/")
        assert len(receiver.requests) == 1
        assert canary.connections == 0
