"""The builder reads and writes exactly the API's document: every demo workflow, and a
hand-written one with every step type, opens in the builder (every step's form drawn) and
saves unchanged. Headless Chromium (Playwright) on Django's live server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, CHROMIUM_ARGS
from workflows.definition import normalise
from workflows.models import Workflow
from workflows.selectors import working_definition
from workflows.services import workflow_save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "builder-pass-42!"

EVERY_STEP_TYPE = {
    "slug": "every-step-type",
    "name": "Every step type",
    "description": "One step of each type, parallel branches, conditions, retry and timeouts.",
    "is_active": False,
    "triggers": [
        {
            "event_type": "deal.stage_changed",
            "priority": 3,
            "is_active": True,
            "conditions": {
                "or": [
                    {"field": "new_stage", "operator": "in", "value": ["won", "negotiation"]},
                    {"not": {"field": "deal.amount", "operator": "lt", "value": 100}},
                ]
            },
        },
        {"event_type": "deal.created", "priority": 0, "is_active": False, "conditions": None},
    ],
    "steps": [
        {
            "key": "note",
            "type": "add_note",
            "config": {
                "entity_type": "deal",
                "entity_id": "{{deal.id}}",
                "note": "Stage {{new_stage}}",
                "visibility": "public",
            },
        },
        {
            "key": "stage",
            "type": "update_field",
            "after": ["note"],
            "config": {
                "entity_type": "deal",
                "entity_id": "{{deal.id}}",
                "field": "stage",
                "value": "won",
            },
            "timeout_seconds": 30,
        },
        {
            "key": "emit",
            "type": "emit_event",
            "after": ["note"],
            "config": {"type": "deal.noted", "payload": {"deal": "{{deal.id}}", "n": 2}},
        },
        {"key": "wait", "type": "delay", "after": ["stage", "emit"], "config": {"for": "2 days"}},
        {
            "key": "check",
            "type": "validate",
            "config": {
                "condition": {"field": "deal.amount", "operator": "gte", "value": 0},
                "message": "amount is negative",
            },
        },
        {
            "key": "mail",
            "type": "send_email",
            "allow_failure": True,
            "retry": {"max_attempts": 4, "backoff_seconds": 5, "max_backoff_seconds": 60},
            "config": {
                "to": "ops@example.com",
                "subject": "Deal {{deal.name}}",
                "body": "It moved to {{new_stage}}.",
            },
        },
        {
            "key": "hook",
            "type": "call_webhook",
            "after": ["check"],
            "conditions": {"field": "deal.amount", "operator": "gt", "value": 1000},
            "config": {
                "url": "https://hooks.example.com/deals",
                "method": "POST",
                "headers": {"X-Source": "flowdesk"},
                "body": {"id": "{{deal.id}}", "stage": "{{new_stage}}"},
                "timeout": 10,
            },
        },
        {
            "key": "export",
            "type": "enqueue_export",
            "after": [],
            "config": {
                "export_type": "csv",
                "entity_type": "deal",
                "filters": {"created_at__gte": "{{today-30}}"},
                "email_to": "ops@example.com",
            },
        },
        {
            "key": "review",
            "type": "create_task",
            "after": ["mail", "hook"],
            "config": {
                "title": "Review {{deal.name}}",
                "queue": "Sales",
                "priority": "high",
                "due_date": "{{today+2}}",
                "wait": True,
                "form": {"fields": [{"name": "ok", "type": "boolean", "label": "OK?"}]},
                "entity_type": "deal",
                "entity_id": "{{deal.id}}",
            },
        },
        {
            "key": "close",
            "type": "transition_task",
            "config": {"task": "{{steps.review.task_id}}", "action": "complete"},
        },
        {
            "key": "tell",
            "type": "send_notification",
            "conditions": {
                "and": [
                    {"field": "deal.owner.email", "operator": "exists"},
                    {"field": "steps.review.result.ok", "operator": "eq", "value": True},
                ]
            },
            "config": {
                "recipient": "{{deal.owner.email}}",
                "message": "Deal {{deal.name}} reviewed",
                "notification_type": "in_app",
                "link": "/admin/crm/deal/{{deal.id}}/",
            },
        },
    ],
}


def open_builder(page: Any, base: str, workflow: Workflow) -> None:
    page.goto(f"{base}/workflows/{workflow.pk}/builder/")
    page.wait_for_function("window.flowdeskBuilder !== undefined")
    page.wait_for_selector("#validity:has-text('valid')")


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_every_demo_workflow_and_every_step_type_round_trips(
    chromium: Path, live_server: Any, make_user: Any, settings: Any, monkeypatch: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from workflows.demo import seed

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    ARTIFACTS.mkdir(exist_ok=True)
    seed()
    workflow_save(document=EVERY_STEP_TYPE)
    make_user("author", superuser=True, password=PASSWORD)
    workflows = list(Workflow.objects.order_by("slug"))
    assert len(workflows) >= 7 and all(not w.has_draft for w in workflows)
    before = {w.slug: working_definition(w) for w in workflows}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            login(page, live_server.url, "author")
            for workflow in workflows:
                open_builder(page, live_server.url, workflow)
                # Given the document the builder holds is the API's, key for key
                held = page.evaluate("window.flowdeskBuilder.document()")
                assert held == before[workflow.slug], workflow.slug
                # When every step's form is drawn (and so every config key read)
                for step in before[workflow.slug]["steps"]:
                    page.click(f"g[data-step='{step['key']}']")
                    expect(page.locator(".step-form h3")).to_contain_text(f"Step {step['key']}")
                assert page.evaluate("window.flowdeskBuilder.document()") == held, workflow.slug
                # and the builder saves it
                page.click("#save-draft")
                expect(page.locator("#message")).to_contain_text(
                    "Saved: the document equals the published version."
                )
                if workflow.slug == EVERY_STEP_TYPE["slug"]:
                    page.screenshot(path=str(ARTIFACTS / "builder-every-step.png"), full_page=True)
        finally:
            browser.close()

    # Then nothing changed: no draft, the same document
    for workflow in Workflow.objects.all():
        assert not workflow.has_draft, workflow.slug
        assert working_definition(workflow) == before[workflow.slug]
    stored = working_definition(Workflow.objects.get(slug="every-step-type"))
    assert all(trigger["key"] for trigger in stored["triggers"])  # given on the first save
    unkeyed = {**stored, "triggers": [{**t, "key": None} for t in stored["triggers"]]}
    assert unkeyed == normalise(json.loads(json.dumps(EVERY_STEP_TYPE)))
    assert errors == []
