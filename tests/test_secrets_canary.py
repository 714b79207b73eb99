"""Secret canaries: values of awkward shapes, used everywhere a webhook step allows, hunted
in every form they can take through every sink of the run; and the policy that keeps
them out of every other step type.

Given secrets in the store shaped to survive naive masking (mixed case, a whole webhook
URL whose path is the secret, quotes and backslashes) and a workflow whose webhook steps
send them in the URL, headers and body to a real loopback receiver that echoes the
whole request back as JSON (so every value comes back JSON-escaped, inside a JSON string
that is escaped again when stored and served), when the run is driven in this process,
then the receiver got every value, and none of the values appears, in any case, URL-,
JSON-, repr-, backslash- or HTML-escaped, in the ActionRun rows (progress included), the
run's API answers (detail, list, history, graph, events), its admin pages, the log
output of the configured console handler and of caplog, or /metrics. Secrets in a note,
an event payload, a task, a notification, a field update or a condition are refused at
validation with ``secret_not_allowed`` and the JSON path. Secrets that come back only
base64-encoded (URL userinfo sent as ``Authorization: Basic``, echoed) are found by
decoding every base64 run of every sink: none.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from django.test import Client

from automation.actions import get_step_type
from automation.models import ActionRun, Event, Run, StepStatus
from automation.secrets import SecretMaskFilter, secret_set, step_config_render
from automation.templating import TemplateRenderError, redact
from tests.step_servers import Answer, WebhookReceiver, execute, webhook_receiver
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db

MASK = "********"


def spellings(value: str) -> set[str]:
    """Every form the value could be found in, written independently of the masking code;
    compared lowercased, so every case of each is covered too."""
    requoted = quote(value, safe="!#$&'()*+,/:;=?@[]~%")
    bases = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        requoted,
        value.split("?")[0],
    }
    forms = set(bases)
    for base in bases:
        escaped = [
            json.dumps(base)[1:-1],
            json.dumps(base, ensure_ascii=True)[1:-1],
            repr(base)[1:-1],
            base.replace("\\", "\\\\"),
            html.escape(base),
            html.escape(base).replace("&#x27;", "&#39;"),
        ]
        forms.update(escaped)
        forms.update(json.dumps(item)[1:-1] for item in escaped)
    return {form.lower() for form in forms if len(form) >= 8}


def hits(text: str, values: dict[str, str]) -> list[str]:
    low = text.lower()
    return [
        f"{name} as {form!r}"
        for name, value in values.items()
        for form in spellings(value)
        if form in low
    ]


@pytest.fixture
def receiver(settings: Any) -> Iterator[WebhookReceiver]:
    settings.FLOWDESK = {**settings.FLOWDESK, "WEBHOOK_ALLOW_HOSTS": ["127.0.0.1"]}
    with webhook_receiver() as server:
        server.default = Answer(echo_all=True)
        yield server


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    """The output of the console handler ``settings.LOGGING`` installs, captured."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, SecretMaskFilter) for f in h.filters)
    ]
    assert handlers, "settings.LOGGING installs no handler with the secret filter"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def plant(receiver: WebhookReceiver) -> dict[str, str]:
    tag = secrets.token_hex(6)
    values = {
        "MIXED": f"MiXeD-CaSe-{tag.upper()}-{secrets.token_hex(6)}",
        "QUOTED": f"q\"uo'te\\back\\\\slash-{tag}",
        "HOOK_URL": f"{receiver.url}/services/T0{tag}/B0{secrets.token_hex(4)}/XyZ{tag}",
    }
    for name, value in values.items():
        secret_set(name=name, value=value)
    return values


def canary_workflow() -> Any:
    return workflow_save(
        document={
            "slug": "canary",
            "name": "canary",
            "triggers": [],
            "steps": [
                {
                    "key": "whole_url",
                    "type": "call_webhook",
                    "config": {
                        "url": "{{secrets.HOOK_URL}}",
                        "headers": {
                            "Authorization": "Bearer {{secrets.MIXED}}",
                            "X-Quoted": "{{secrets.QUOTED}}",
                            "X-Lower": "{{secrets.MIXED|lower}}",
                            "X-Url": "{{secrets.HOOK_URL|urlencode}}",
                        },
                        "body": {
                            "token": "{{secrets.QUOTED}}",
                            "list": ["{{secrets.MIXED|upper}}"],
                            "text": "url={{secrets.HOOK_URL}} key={{secrets.MIXED}}",
                        },
                    },
                },
                {
                    "key": "in_path",
                    "type": "call_webhook",
                    "after": ["whole_url"],
                    "config": {
                        "url": "{{secrets.HOOK_URL}}/more/{{secrets.MIXED}}/{{secrets.QUOTED}}?q="
                        "{{secrets.QUOTED|urlencode}}",
                        "method": "PUT",
                        "body": "{{secrets.QUOTED}}",
                    },
                },
                {
                    "key": "rejected",
                    "type": "call_webhook",
                    "after": ["in_path"],
                    "allow_failure": True,
                    "config": {
                        "url": "{{secrets.HOOK_URL}}/gone/{{secrets.MIXED}}",
                        "headers": {"X-Quoted": "{{secrets.QUOTED}}"},
                    },
                },
                {
                    "key": "refused",
                    "type": "call_webhook",
                    "after": ["rejected"],
                    "allow_failure": True,
                    "config": {"url": "http://10.0.0.1/{{secrets.MIXED}}"},
                },
            ],
        }
    )


def test_planted_secrets_appear_in_no_sink_in_any_form(
    receiver: WebhookReceiver,
    drain: Any,
    admin_user: Any,
    api: Any,
    console_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    values = plant(receiver)
    workflow = canary_workflow()
    receiver.script = [
        Answer(echo_all=True),
        Answer(echo_all=True),
        Answer(status=404, echo_all=True),
    ]
    run = execute(workflow, {"lead": 1})
    drain()

    # The values really went out, and came back in the receiver's answers.
    assert len(receiver.requests) == 3
    first, second, third = receiver.requests
    assert first.headers["authorization"] == f"Bearer {values['MIXED']}"
    assert first.headers["x-quoted"] == values["QUOTED"]
    assert first.json()["token"] == values["QUOTED"]
    assert first.path == values["HOOK_URL"].removeprefix(receiver.url)
    assert values["MIXED"] in second.path and quote(values["QUOTED"], safe="") in second.path
    assert third.headers["x-quoted"] == values["QUOTED"]
    steps = {ar.step_key: ar for ar in ActionRun.objects.filter(run=run)}
    assert steps["whole_url"].status == steps["in_path"].status == StepStatus.COMPLETED
    assert (steps["rejected"].status, steps["rejected"].error_code) == (
        StepStatus.FAILED,
        "WEBHOOK_REJECTED",
    )
    assert (steps["refused"].status, steps["refused"].error_code) == (
        StepStatus.FAILED,
        "UNSAFE_URL",
    )
    assert steps["whole_url"].progress["delivered"]["url"] == MASK
    assert steps["whole_url"].input["headers"]["Authorization"] == f"Bearer {MASK}"
    assert MASK in steps["rejected"].error and MASK in steps["refused"].error

    places = sinks(run, api, admin_user, console_log, caplog, settings)
    assert "webhook PUT" in places["console log"]  # the client's log lines were captured

    found = {place: hits(text, values) for place, text in places.items()}
    assert {place: found_here for place, found_here in found.items() if found_here} == {}


def sinks(
    run: Any,
    api: Any,
    admin_user: Any,
    console_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> dict[str, str]:
    """The text of every place a run's values could end up: its rows, its API answers, its
    admin pages, /metrics and the log output."""
    places: dict[str, str] = {
        "action runs": json.dumps(list(ActionRun.objects.filter(run=run).values()), default=str),
        "run row": json.dumps(list(Run.objects.filter(pk=run.pk).values()), default=str),
        "events": json.dumps(list(Event.objects.values()), default=str),
    }
    event_id = Run.objects.get(pk=run.pk).event_id
    for url in (
        f"/api/v1/runs/{run.pk}/",
        "/api/v1/runs/",
        f"/api/v1/runs/{run.pk}/history/",
        f"/api/v1/runs/{run.pk}/graph/",
        "/api/v1/events/",
        f"/api/v1/events/{event_id}/",
    ):
        response = api.get(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 200, url
        places[f"API {url}"] = response.content.decode()
    client = Client()
    client.force_login(admin_user)
    for url in (
        f"/admin/automation/run/{run.pk}/change/",
        "/admin/automation/run/",
        f"/admin/automation/event/{event_id}/change/",
        "/admin/automation/event/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        places[f"admin {url}"] = response.content.decode()
    settings.METRICS_TOKEN = "canary-metrics-token"
    metrics = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer canary-metrics-token")
    assert metrics.status_code == 200
    places["/metrics"] = metrics.content.decode()
    places["console log"] = console_log.getvalue()
    places["caplog"] = caplog.text
    return places


BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}")


def base64_hits(text: str, values: dict[str, str]) -> list[str]:
    """Values found by decoding every run of base64 characters in ``text`` (standard or
    URL-safe, from each of the four character offsets, so at any byte alignment)."""
    found = []
    for match in BASE64_RUN.finditer(text):
        run = match.group().translate(str.maketrans("-_", "+/"))
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                decoded = base64.b64decode(chunk, validate=True)
            except ValueError:
                continue
            found += [
                f"{name} in base64 {match.group()!r}"
                for name, value in values.items()
                if value.encode() in decoded
            ]
    return found


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_base64_secret_is_masked_at_every_alignment_with_or_without_padding(
    encode: Any,
) -> None:
    value = "s3cr3t-V4lue/with+odd?bytes"
    for before in ("", "a", "ab", "user:"):
        for after in ("", ":", ":pw", "xyz"):
            encoded = encode(f"{before}{value}{after}".encode()).decode()
            for text in (encoded, encoded.rstrip("="), f"Authorization: Basic {encoded}"):
                masked = redact(text, [value])
                assert MASK in masked and base64_hits(masked, {"v": value}) == [], text
    # Unrelated base64 and ordinary words are left alone.
    other = base64.b64encode(b"nothing secret here at all").decode()
    assert redact(f"Basic {other} S3CR3T", [value]) == f"Basic {other} S3CR3T"


def test_secrets_sent_base64_encoded_are_masked_where_they_come_back(
    receiver: WebhookReceiver,
    drain: Any,
    admin_user: Any,
    api: Any,
    console_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> None:
    """Userinfo in a webhook URL goes out as ``Authorization: Basic base64(user:password)``;
    a receiver that echoes the header back (in its body and in a header) hands the
    secrets back only base64-encoded: as the password with a plain user, and as both
    halves of the pair."""
    caplog.set_level(logging.DEBUG)
    values = plant(receiver)
    address = receiver.url.removeprefix("http://")
    workflow = workflow_save(
        document={
            "slug": "canary-basic",
            "name": "canary-basic",
            "triggers": [],
            "steps": [
                {
                    "key": "password",
                    "type": "call_webhook",
                    "config": {"url": f"http://canary:{{{{secrets.MIXED}}}}@{address}/basic"},
                },
                {
                    "key": "both",
                    "type": "call_webhook",
                    "config": {
                        "url": "http://{{secrets.MIXED}}:{{secrets.QUOTED|urlencode}}"
                        f"@{address}/both",
                        "method": "PUT",
                    },
                },
            ],
        }
    )
    receiver.script = [Answer(echo_header="Authorization"), Answer(echo_header="Authorization")]
    run = execute(workflow, {})
    drain()

    first, second = receiver.wait(2)
    assert (
        first.headers["authorization"]
        == "Basic " + base64.b64encode(f"canary:{values['MIXED']}".encode()).decode()
    )
    assert (
        second.headers["authorization"]
        == "Basic " + base64.b64encode(f"{values['MIXED']}:{values['QUOTED']}".encode()).decode()
    )
    steps = {ar.step_key: ar for ar in ActionRun.objects.filter(run=run)}
    assert {ar.status for ar in steps.values()} == {StepStatus.COMPLETED}
    echoed = steps["password"].output["response"]
    assert echoed["json"]["echo"].startswith("Basic ") and MASK in echoed["json"]["echo"]
    assert MASK in echoed["headers"]["x-echo"]

    places = sinks(run, api, admin_user, console_log, caplog, settings)
    found = {
        place: hits(text, values) + base64_hits(text, values) for place, text in places.items()
    }
    assert {place: found_here for place, found_here in found.items() if found_here} == {}


def test_the_log_filter_masks_any_library_record(
    console_log: io.StringIO, receiver: WebhookReceiver
) -> None:
    values = plant(receiver)
    log = logging.getLogger("urllib3.connectionpool")
    log.warning('%s "%s %s HTTP/1.1"', receiver.url, "POST", quote(values["HOOK_URL"]).upper())
    try:
        raise RuntimeError(f"failed with {values['QUOTED']!r}")
    except RuntimeError:
        logging.getLogger("somewhere").exception("boom %s", json.dumps(values["MIXED"].lower()))
    text = console_log.getvalue()
    assert "boom" in text and "RuntimeError" in text and MASK in text
    assert hits(text, values) == []


# --- the policy: secrets only where a step sends them outward ---------------------------

ELSEWHERE = [
    (
        "add_note",
        {"entity_type": "lead", "entity_id": "1", "note": "key {{secrets.MIXED}}"},
        "steps[0].config.note",
    ),
    (
        "emit_event",
        {"type": "leak.out", "payload": {"k": ["{{ secrets.MIXED }}"]}},
        "steps[0].config.payload.k[0]",
    ),
    (
        "create_task",
        {"title": "{{secrets.MIXED|upper}}", "assignee": "ann"},
        "steps[0].config.title",
    ),
    (
        "send_notification",
        {"recipient": "ann", "message": "{{secrets.MIXED}}"},
        "steps[0].config.message",
    ),
    (
        "update_field",
        {"entity_type": "lead", "entity_id": "1", "field": "status", "value": "{{secrets.MIXED}}"},
        "steps[0].config.value",
    ),
    (
        "send_email",
        {"to": "a@example.com", "subject": "s", "body": "{{secrets.MIXED}}"},
        "steps[0].config.body",
    ),
    (
        "call_webhook",
        {"url": "https://example.com/", "timeout": "{{secrets.MIXED}}"},
        "steps[0].config.timeout",
    ),
]


@pytest.mark.parametrize(
    ("step_type", "config", "path"),
    ELSEWHERE,
    ids=[f"{case[0]}:{case[2].rsplit('.', 1)[-1]}" for case in ELSEWHERE],
)
def test_a_secret_routed_elsewhere_is_refused_at_validation(
    api: Any, make_user: Any, step_type: str, config: dict[str, Any], path: str
) -> None:
    make_user("ann")  # the assignee and recipient exist: only the secret is refused
    document = {
        "slug": "route",
        "name": "route",
        "triggers": [],
        "steps": [{"key": "s", "type": step_type, "config": config}],
    }
    response = api.post("/api/v1/workflows/validate/", document, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert any(m.startswith("secret_not_allowed:") for m in error["fields"].get(path, [])), error
    response = api.post("/api/v1/workflows/", document, format="json")
    assert response.status_code == 400 and path in response.json()["error"]["fields"]
    # The same step reading the context instead is valid: the secret was the only fault.
    plain = json.loads(json.dumps(document).replace("secrets.MIXED", "lead.id"))
    response = api.post("/api/v1/workflows/validate/", plain, format="json")
    assert response.status_code == 200, response.content


def test_a_secret_in_a_condition_is_refused(api: Any) -> None:
    document = {
        "slug": "cond",
        "name": "cond",
        "triggers": [],
        "steps": [
            {
                "key": "s",
                "type": "call_webhook",
                "config": {"url": "https://example.com/"},
                "conditions": {
                    "field": "lead.status",
                    "operator": "eq",
                    "value": "{{secrets.MIXED}}",
                },
            }
        ],
    }
    response = api.post("/api/v1/workflows/validate/", document, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert any(
        m.startswith("secret_not_allowed:") for m in fields.get("steps[0].conditions.value", [])
    ), fields
    plain = json.loads(json.dumps(document).replace("secrets.MIXED", "lead.id"))
    assert api.post("/api/v1/workflows/validate/", plain, format="json").status_code == 200


def test_the_webhook_fields_that_send_outward_may_use_secrets(api: Any) -> None:
    assert get_step_type("call_webhook").secret_fields == ("url", "headers", "body")
    document = {
        "slug": "out",
        "name": "out",
        "triggers": [],
        "steps": [
            {
                "key": "s",
                "type": "call_webhook",
                "config": {
                    "url": "https://example.com/{{secrets.MIXED}}",
                    "headers": {"Authorization": "Bearer {{secrets.MIXED}}"},
                    "body": {"k": ["{{secrets.MIXED}}"]},
                },
            }
        ],
    }
    response = api.post("/api/v1/workflows/validate/", document, format="json")
    assert response.status_code == 200, response.content


def test_rendering_gives_secrets_only_to_the_outward_fields() -> None:
    step_type = get_step_type("call_webhook")
    assert step_type is not None
    config, used = step_config_render(
        step_type,
        {"url": "https://example.com/{{secrets.K}}", "method": "POST"},
        {},
        lookup=lambda name: "v4lue-of-k",
    )
    assert config == {"url": "https://example.com/v4lue-of-k", "method": "POST"}
    assert used == {"v4lue-of-k"}
    with pytest.raises(TemplateRenderError) as refused:
        step_config_render(
            step_type,
            {"url": "https://example.com/", "timeout": "{{secrets.K}}"},
            {},
            lookup=lambda name: "v4lue-of-k",
        )
    assert refused.value.code == "SECRETS_UNAVAILABLE"


def test_the_worker_handlers_get_the_filter_too() -> None:
    """Celery replaces the root logger's handlers with its own when a worker starts; its
    ``after_setup_logger`` signal gives them the filter."""
    from celery.signals import after_setup_logger

    logger = logging.getLogger("flowdesk.test.worker")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        after_setup_logger.send(
            sender=None,
            logger=logger,
            loglevel=logging.INFO,
            logfile=None,
            format="",
            colorize=False,
        )
        assert [type(f) for f in handler.filters] == [SecretMaskFilter]
        secret_set(name="WORKER_SEEN", value="w0rker-Secret-Value")
        logger.warning("GET /hooks/%s", "W0RKER-SECRET-VALUE")
        assert stream.getvalue() == f"GET /hooks/{MASK}\n"
    finally:
        logger.removeHandler(handler)
