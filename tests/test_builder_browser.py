"""The builder in a real browser: headless Chromium (Playwright) on daphne as the Procfile
runs it, with a real Celery worker on PostgreSQL and Redis.

From an empty workflow, by clicking, choosing and typing only: the trigger ``lead.created``
from the event catalogue with ``annual_revenue gte 1000000`` and ``budget gte 50000``;
``update_field`` (status qualified), ``send_notification`` to the lead's owner,
``create_task`` due ``{{today+2}}`` with allow_failure, ``add_note``. An assignee who is no
user shows its error at its control and publishing is refused with the API's code; the dry
run on a stored lead shows the match on the graph; publishing shows the diff; a lead
created through the admin then runs the published version to completion. Then a parallel
branch with its own condition is added and published as version 2, which the next lead
runs. The saved document equals the one written here by hand. Screenshots at 1366 and
390 px are kept in test-artifacts/; no console error, no request to another origin.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from automation.models import Run
from crm.models import Lead
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS, wait_for
from workflows.definition import normalise
from workflows.models import Workflow
from workflows.selectors import working_definition

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PASSWORD = "builder-pass-42!"

# Seed 004's first example, as a person would write it by hand.
EXPECTED = {
    "slug": "qualify-high-value-leads",
    "name": "Auto-qualify high-value leads",
    "triggers": [
        {
            "key": "on_lead_created",  # given by the first save, from the event type
            "event_type": "lead.created",
            "priority": 10,
            "conditions": {
                "and": [
                    {"field": "annual_revenue", "operator": "gte", "value": 1000000},
                    {"field": "budget", "operator": "gte", "value": 50000},
                ]
            },
        }
    ],
    "steps": [
        {
            "key": "qualify",
            "type": "update_field",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
                "field": "status",
                "value": "qualified",
            },
        },
        {
            "key": "notify",
            "type": "send_notification",
            "config": {
                "recipient": "{{lead.owner.email}}",
                "message": "New qualified lead: {{lead.company_name}}",
                "notification_type": "in_app",
                "link": "/leads/{{lead.id}}",
            },
        },
        {
            "key": "follow_up",
            "type": "create_task",
            "allow_failure": True,
            "config": {
                "title": "Follow up with {{lead.company_name}}",
                "assignee": "{{lead.owner.email}}",
                "due_date": "{{today+2}}",
                "priority": "high",
            },
        },
        {
            "key": "note",
            "type": "add_note",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
                "note": "Qualified automatically.",
            },
        },
    ],
}


REJECTED_400 = "Failed to load resource: the server responded with a status of 400"


class Watch:
    """Console errors and requests to other origins of one page."""

    def __init__(self, page: Any, origin: str) -> None:
        self.errors: list[str] = []
        self.other_origin: list[str] = []
        self.failed: list[tuple[int, str, str]] = []

        def route(route: Any) -> None:
            parts = urlsplit(route.request.url)
            if parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" == origin:
                route.continue_()
            else:
                self.other_origin.append(route.request.url)
                route.abort()

        def console(message: Any) -> None:
            # Chromium logs every 4xx answer to a fetch; the builder's validation answers
            # (400 VALIDATION_ERROR) are checked one by one in ``failed`` instead.
            if message.type == "error" and not message.text.startswith(REJECTED_400):
                self.errors.append(message.text)

        def response(answer: Any) -> None:
            if answer.status >= 400:
                self.failed.append((answer.status, answer.request.method, answer.url))

        page.route("**/*", route)
        page.on("console", console)
        page.on("response", response)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))


def choose_event(page: Any, selector: str, event_type: str) -> None:
    """The trigger's event type comes from the catalogue: a select grouped by model/kind."""
    control = page.locator(selector)
    assert control.evaluate("el => el.tagName") == "SELECT", "the catalogue is not offered"
    groups = control.locator("optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert "lead · model" in groups, groups
    control.select_option(event_type)


def leaf(page: Any, base: str, field: str, operator: str, value: str) -> None:
    page.fill(f"#{base}-field", field)
    page.press(f"#{base}-field", "Tab")
    page.select_option(f"#{base}-operator", operator)
    page.fill(f"#{base}-value", value)


def add_step(page: Any, step_type: str, key: str, index: int) -> None:
    page.select_option("#new-step-type", step_type)
    page.click("#add-step")
    page.fill(f"#f-steps-{index}-key", key)
    page.press(f"#f-steps-{index}-key", "Tab")
    page.wait_for_selector(f"g[data-step='{key}']")


def no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at 390 px ({width} px wide)"


def wait_valid(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#validity")).to_have_text("The draft is valid.")


def test_build_try_publish_and_run_a_workflow_by_clicking(
    chromium: Path,
    asgi_server: Any,
    celery_worker: Any,
    make_user: Any,
    settings: Any,
    monkeypatch: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    ARTIFACTS.mkdir(exist_ok=True)
    author = make_user("author", superuser=True, password=PASSWORD)
    owner = make_user("owen")
    stored = Lead.objects.create(
        company_name="Stored Corp",
        annual_revenue=Decimal("2500000"),
        budget=Decimal("80000"),
        owner=owner,
    )
    base = asgi_server.url
    origin = f"{urlsplit(base).scheme}://{urlsplit(base).netloc}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        watch = Watch(page, origin)
        try:
            page.goto(f"{base}/accounts/login/")
            page.fill("#id_username", "author")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")

            # Given an empty workflow, from the home page
            expect(page.locator("#new-in-builder")).to_have_attribute("href", "/workflows/new/")
            page.goto(f"{base}/workflows/new/")
            page.fill("#id_name", EXPECTED["name"])
            page.fill("#id_slug", EXPECTED["slug"])
            page.click("#create-workflow")
            page.wait_for_url("**/builder/")
            page.wait_for_function("window.flowdeskBuilder !== undefined")
            workflow = Workflow.objects.get(slug=EXPECTED["slug"])

            # When the trigger is chosen from the catalogue, with its condition
            page.click("#add-trigger")
            choose_event(page, "#f-triggers-0-event-type", "lead.created")
            page.fill("#f-triggers-0-priority", "10")
            page.click("#f-triggers-0-conditions-add")
            leaf(page, "f-triggers-0-conditions-and-0", "annual_revenue", "gte", "1000000")
            page.click("#f-triggers-0-conditions-add-leaf")
            leaf(page, "f-triggers-0-conditions-and-1", "budget", "gte", "50000")

            # and four steps, each configured through its generated form
            add_step(page, "update_field", "qualify", 0)
            page.select_option("#f-steps-0-config-entity-type", "lead")
            page.fill("#f-steps-0-config-entity-id", "{{lead.id}}")
            page.select_option("#f-steps-0-config-field", "status")
            page.select_option("#f-steps-0-config-value", "qualified")

            add_step(page, "send_notification", "notify", 1)
            page.fill("#f-steps-1-config-recipient", "{{lead.owner.email}}")
            page.fill("#f-steps-1-config-message", "New qualified lead: {{lead.company_name}}")
            page.select_option("#f-steps-1-config-notification-type", "in_app")
            page.fill("#f-steps-1-config-link", "/leads/{{lead.id}}")

            add_step(page, "create_task", "follow_up", 2)
            page.fill("#f-steps-2-config-title", "Follow up with {{lead.company_name}}")
            # an assignee who is not a user is shown at its control
            page.fill("#f-steps-2-config-assignee", "nobody@example.com")
            error = page.locator('[data-error-for="steps[2].config.assignee"]')
            expect(error).to_contain_text("no active user 'nobody@example.com'")
            assignee = page.locator("#f-steps-2-config-assignee")
            expect(assignee).to_have_attribute("aria-invalid", "true")
            assert assignee.get_attribute("aria-describedby") == error.get_attribute("id")
            expect(page.locator("#problem-list")).to_contain_text("steps[2].config.assignee")
            page.screenshot(path=str(ARTIFACTS / "builder-error-1366.png"), full_page=True)
            # and publishing is refused with the API's code for the same document
            held = page.evaluate("window.flowdeskBuilder.document()")
            page.click("#publish-open")
            expect(page.locator("#message")).to_contain_text("Not saved (VALIDATION_ERROR)")
            api = APIClient()
            api.force_authenticate(author)
            refused = api.put(f"/api/v1/workflows/{workflow.pk}/", held, format="json")
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
            assert "steps[2].config.assignee" in refused.json()["error"]["fields"]
            page.fill("#f-steps-2-config-assignee", "{{lead.owner.email}}")
            expect(error).to_have_count(0)
            # the template-aware input offers the variables of this step, dates included
            page.select_option("#f-steps-2-config-due-date-vars", "today+2")
            expect(page.locator("#f-steps-2-config-due-date")).to_have_value("{{today+2}}")
            page.select_option("#f-steps-2-config-priority", "high")
            page.check("#f-steps-2-allow-failure")

            add_step(page, "add_note", "note", 3)
            page.select_option("#f-steps-3-config-entity-type", "lead")
            page.fill("#f-steps-3-config-entity-id", "{{lead.id}}")
            page.fill("#f-steps-3-config-note", "Qualified automatically.")
            wait_valid(page)
            for edge in ("qualify->notify", "notify->follow_up", "follow_up->note"):
                expect(page.locator(f"[data-edge='{edge}']")).to_have_count(1)

            # and tried on the stored lead: the match is drawn on the graph
            page.click("#try-open")
            page.fill("#try-entity", str(stored.pk))
            page.click("#try-run")
            expect(page.locator("#try-verdict")).to_contain_text("Matched")
            for key in ("qualify", "notify", "follow_up", "note"):
                node = page.locator(f"g[data-step='{key}']")
                expect(node).to_have_class(re.compile(r"\btrace-completed\b"))
            page.screenshot(path=str(ARTIFACTS / "builder-1366.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            no_horizontal_scroll(page)
            page.screenshot(path=str(ARTIFACTS / "builder-390.png"), full_page=True)
            page.set_viewport_size({"width": 1366, "height": 900})

            # Then the saved draft is the hand-written document
            workflow.refresh_from_db()
            assert workflow.has_draft and working_definition(workflow) == normalise(EXPECTED)

            # When it is published, after the diff is shown
            page.click("#publish-open")
            expect(page.locator("#diff")).to_contain_text("The first version")
            page.click("#publish-confirm")
            expect(page.locator("#message")).to_contain_text("Version 1 is published")
            expect(page.locator("#version-list")).to_contain_text("v1")

            # and a qualifying lead is created through the admin
            page.goto(f"{base}/admin/crm/lead/add/")
            page.fill("#id_company_name", "Admin Made Ltd")
            page.fill("#id_annual_revenue", "1500000")
            page.fill("#id_budget", "60000")
            page.select_option("#id_owner", str(owner.pk))
            page.click("input[name=_save]")
            lead = wait_for(lambda: Lead.objects.filter(company_name="Admin Made Ltd").first())

            # Then the published version runs to completion, as the lead's page shows
            run = wait_for(
                lambda: Run.objects.filter(
                    workflow=workflow, status="completed", context__lead__id=lead.pk
                ).first(),
                timeout=60,
                message="the run of version 1 to complete",
            )
            assert run.version.number == 1
            page.goto(f"{base}/admin/crm/lead/{lead.pk}/change/")
            expect(page.locator("body")).to_contain_text("completed")
            lead.refresh_from_db()
            assert lead.status == "qualified"

            # When a parallel branch with its own condition is added and republished
            page.goto(f"{base}/workflows/{workflow.pk}/builder/")
            page.wait_for_function("window.flowdeskBuilder !== undefined")
            page.click("g[data-step='note']")
            page.select_option("#new-step-type", "add_note")
            page.click("#add-parallel")
            page.fill("#f-steps-4-key", "big_budget")
            page.press("#f-steps-4-key", "Tab")
            page.select_option("#f-steps-4-config-entity-type", "lead")
            page.fill("#f-steps-4-config-entity-id", "{{lead.id}}")
            page.fill("#f-steps-4-config-note", "Budget above 100k.")
            page.click("#f-steps-4-conditions-add")
            leaf(page, "f-steps-4-conditions-and-0", "budget", "gt", "100000")
            wait_valid(page)
            expect(page.locator("[data-edge='follow_up->note']")).to_have_count(1)
            expect(page.locator("[data-edge='follow_up->big_budget']")).to_have_count(1)
            page.screenshot(path=str(ARTIFACTS / "builder-parallel-1366.png"), full_page=True)
            page.click("#publish-open")
            expect(page.locator("#diff")).to_contain_text("big_budget")
            page.click("#publish-confirm")
            expect(page.locator("#message")).to_contain_text("Version 2 is published")
        finally:
            browser.close()

    # Then the next lead runs version 2, with the branch's condition deciding
    with transaction.atomic():
        small = Lead.objects.create(
            company_name="Mid Budget",
            annual_revenue=Decimal("3000000"),
            budget=Decimal("70000"),
            owner=owner,
        )
    run = wait_for(
        lambda: Run.objects.filter(
            workflow=workflow, status="completed", context__lead__id=small.pk
        ).first(),
        timeout=60,
        message="the run of version 2 to complete",
    )
    assert run.version.number == 2
    statuses = {ar.step_key: ar.status for ar in run.action_runs.all()}
    assert statuses["big_budget"] == "skipped" and statuses["note"] == "completed"
    workflow.refresh_from_db()
    steps = working_definition(workflow)["steps"]
    assert steps[4]["after"] == ["follow_up"] and steps[4]["conditions"] == {
        "and": [{"field": "budget", "operator": "gt", "value": 100000}]
    }
    assert watch.other_origin == []
    # The only refusals were validation answers about the document being edited
    api_root = f"{base}/api/v1/workflows/"
    for status, method, url in watch.failed:
        assert status == 400, (status, method, url)
        assert url in (f"{api_root}validate/", f"{api_root}{workflow.pk}/"), url
    assert watch.errors == []
    for name in ("builder-1366.png", "builder-390.png", "builder-error-1366.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
