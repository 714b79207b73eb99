"""Fuzz the API from its own OpenAPI schema, as staff and as a plain agent: bad input never
gets a 500, every answer is what the schema documents, and every error answers in the one
envelope.

schemathesis generates requests (valid and invalid: its coverage cases for every
parameter and body field, then a few drawn cases, all from a fixed seed) for every
operation of the schema and sends each one in-process to the WSGI app as an agent (not
staff, member of a queue) and as a superuser. Every answer must be no server error
and exactly what the schema documents for it: a documented status code, content type and
headers, and a body matching that status's schema (nullable fields marked nullable, lists
as lists, errors in the error shape).

Ids drawn at random name nothing, so operations on one object are sent, as each role,
with the id of an object the test made (a published workflow with a trigger and steps, a
run waiting on a task, the agent's task with history, a notification, a queue, a secret,
an SLA config, an export): their real answers are checked against the schema too, asked
for as a browser would (``Accept: text/html``): an API client gets JSON all the same.
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
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
# The same cases on every run: a fixed seed per operation, and no example database.
schema.config.seed = 20261202

# Cases per operation and role beyond schemathesis' coverage cases (every boundary and
# every kind of wrong value the schema defines, generated deterministically).
EXAMPLES = 4
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


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


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    error_envelope,
]


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
def world(make_user: Any, keep_connection: None) -> dict[str, Any]:
    """A superuser and an agent with tokens, and one object of each kind the API serves."""
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from automation import services
    from automation.catalogue import declare_event
    from automation.models import ActionRun, Export, Secret
    from automation.secrets import secret_set
    from tasks_inbox import services as tasks
    from tasks_inbox.models import Notification, Queue
    from tasks_inbox.sla.configs import sla_config_save
    from workflows.services import workflow_save

    for event_type in ("fuzz.go", "fuzz.done"):
        declare_event(event_type, description="An event of the API fuzz test.")
    staff = make_user("fuzz-staff", superuser=True)
    agent = make_user("fuzz-agent", groups=("fuzz-queue",))
    group = Group.objects.get(name="fuzz-queue")
    Queue.objects.create(group=group, routing="claim")
    workflow = workflow_save(
        document={
            "slug": "fuzz",
            "name": "Fuzz",
            "triggers": [{"event_type": "fuzz.go", "conditions": None}],
            "steps": [
                {
                    "key": "review",
                    "type": "create_task",
                    "config": {"title": "Review {{n}}", "assignee": "fuzz-agent", "wait": True},
                },
                {"key": "after", "type": "emit_event", "config": {"type": "fuzz.done"}},
            ],
        }
    )
    run = services.workflow_execute(workflow_id=workflow.pk, payload={"n": 1}, actor=staff)
    services.run_advance(run_id=run.pk)
    task = tasks.task_create(title="mine", assignee=agent)
    tasks.task_transition(task_id=task.pk, action="start", actor=agent)
    tasks.task_create(title="claimable", queue=group)
    notification = Notification.objects.create(recipient=agent, message="hello", link="/inbox/")
    secret_set(name="FUZZ_KEY", value="fuzz-secret-value")
    sla = sla_config_save(document={"name": "fuzz", "queue": "fuzz-queue", "target": "1h"})
    export = Export.objects.create(
        entity_type="lead",
        fields=["id"],
        requested_by=agent,
        action_run=ActionRun.objects.filter(run=run).first(),
    )
    return {
        "tokens": {
            "staff": Token.objects.create(user=staff).key,
            "agent": Token.objects.create(user=agent).key,
        },
        "ids": {
            "workflows": workflow.pk,
            "triggers": workflow.triggers.first().pk,
            "actions": workflow.steps.first().pk,
            "runs": run.pk,
            "events": run.event_id,
            "tasks": task.pk,
            "notifications": notification.pk,
            "queues": group.pk,
            "secrets": Secret.objects.get(name="FUZZ_KEY").name,
            "sla-configs": sla.pk,
            "exports": export.pk,
            "lifecycles": task.lifecycle_id,
        },
    }


def known_parameters(case: Any, ids: dict[str, Any]) -> dict[str, Any] | None:
    """The path parameters naming the test's own object of the case's resource, or None
    when the operation names no object."""
    if not case.path_parameters:
        return None
    resource = case.operation.path.split("/")[3]
    if resource not in ids:
        return None
    known = {}
    for name in case.path_parameters:
        known[name] = 1 if name == "number" else ids[resource]
    return known


@schema.parametrize()
@FUZZ_SETTINGS
def test_answers_match_the_schema(case: Any, world: dict[str, Any]) -> None:
    """Each case as the agent and as staff. An operation on one object gets the test's own
    object as each role (asked for as a browser would: an API client must get the JSON
    the schema documents anyway) and the generated ids, which name nothing, once, as
    staff, who could see whatever they named."""
    known = known_parameters(case, world["ids"])
    for role in ("agent", "staff"):
        headers = {"Authorization": f"Token {world['tokens'][role]}"}
        if known is None or role == "staff":
            case.call_and_validate(headers=headers, checks=CHECKS)
        if known is not None:
            generated = case.path_parameters
            case.path_parameters = {**generated, **known}
            try:
                case.call_and_validate(
                    headers={**headers, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                    checks=CHECKS,
                )
            finally:
                case.path_parameters = generated


def test_every_error_is_the_error_shape() -> None:
    """Every error answer the schema documents is the ``Error`` component, and every
    page-number list documents the 404 of a page past the end."""
    document = schema.raw_schema
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operations += 1
            responses = operation["responses"]
            for status, response in responses.items():
                if status[0] in "45":
                    content = response.get("content", {})
                    assert list(content) == ["application/json"], (method, path, status)
                    ref = content["application/json"]["schema"].get("$ref")
                    assert ref == "#/components/schemas/Error", (method, path, status)
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            if method == "get" and "page" in names:
                assert "404" in responses, (method, path)
    assert operations >= 90


@pytest.mark.parametrize("path", ["/api/v1/workflows/", "/api/v1/tasks/", "/api/v1/"])
def test_api_clients_get_json_a_browser_gets_the_browsable_api(
    path: str, admin_user: Any, keep_connection: None
) -> None:
    """A token client asking for HTML (``?format=api``, ``Accept: text/html``) gets JSON;
    the login session in a browser gets the browsable API's page."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    token = Token.objects.get_or_create(user=admin_user)[0].key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    for query, accept in (({"format": "api"}, "*/*"), ({}, "text/html")):
        answer = client.get(path, query, HTTP_ACCEPT=accept)
        assert answer.status_code == 200
        assert answer["Content-Type"] == "application/json", (query, accept)
        answer.json()
    browser = APIClient()
    browser.force_login(admin_user)
    page = browser.get(path, HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    assert browser.get(path, {"format": "api"})["Content-Type"].startswith("text/html")
    assert browser.get(path)["Content-Type"] == "application/json"


def test_real_objects_answer_as_documented(world: dict[str, Any]) -> None:
    """Every read of one of the test's objects answers 200 (to staff, or to the agent whose
    it is), and to both roles exactly as the schema documents (the run's history and its
    nullable durations, the event's actor, the task's available actions...); a page past
    the last one of every page-number list answers its documented 404."""
    read = 0
    past_the_end = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "GET":
            continue
        names = {parameter.name for parameter in operation.query}
        if "{" in operation.path:
            resource = operation.path.split("/")[3]
            if resource not in world["ids"]:
                continue
            known = {
                name: 1 if name == "number" else world["ids"][resource]
                for name in (parameter.name for parameter in operation.path_parameters)
            }
            statuses = set()
            for role in ("staff", "agent"):
                headers = {"Authorization": f"Token {world['tokens'][role]}"}
                case = operation.Case(path_parameters=known)
                statuses.add(case.call_and_validate(headers=headers, checks=CHECKS).status_code)
            # Staff see every object, the agent its own notification; the test's export has
            # no file yet: its download is 409 EXPORT_NOT_READY.
            expected = 409 if operation.path.endswith("/download/") else 200
            assert expected in statuses, (operation.label, statuses)
            read += 1
        elif "page" in names and not any(parameter.is_required for parameter in operation.query):
            headers = {"Authorization": f"Token {world['tokens']['staff']}"}
            case = operation.Case(query={"page": 999})
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            assert response.status_code == 404, (operation.label, response.text)
            assert response.json()["error"]["code"] == "NOT_FOUND"
            past_the_end += 1
    assert read >= 20 and past_the_end >= 10, (read, past_the_end)
