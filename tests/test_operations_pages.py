"""The run page and the monitoring page in Chromium at 1366 and 390 px, with data in every
new part (a delayed run's timeline, active runs with indicators, the task queue dashboard):
nothing scrolls the page sideways, the parts are visible, and the screenshots are kept in
``test-artifacts/operations/``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from automation.events import emit
from automation.models import ActionRun, Run, RunStatus
from crm.models import Deal
from tasks_inbox import services as tasks
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS
from tests.servers import AsgiServer
from tests.test_live_pages import session_cookie
from workflows.services import workflow_save

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

SHOTS = ARTIFACTS / "operations"
# The page's widest element against the viewport: a sideways scroll shows as a difference.
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def note(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "type": "add_note",
        "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": key},
    }


def seed(drain: Any) -> Run:
    """A workflow with history, one run delayed on a long-named step, one retrying, and
    tasks in two queues; returns the delayed run."""
    workflow_save(
        document={
            "slug": "claims-intake-with-a-long-name",
            "name": "Claims intake",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                note("record_the_claim_and_its_documents"),
                {"key": "cooling_off_period", "type": "delay", "config": {"for": "1 day"}},
                note("notify"),
                note("close"),
            ],
        }
    )
    deal = Deal.objects.create(name="Claims")
    for _ in range(5):
        emit("deal.won", {"deal_id": deal.pk})
    drain()
    runs = list(Run.objects.order_by("pk"))
    now = timezone.now()
    for i, run in enumerate(runs[:3]):
        steps = ActionRun.objects.filter(run=run)
        steps.filter(step_key="record_the_claim_and_its_documents").update(
            started_at=now - dt.timedelta(seconds=400), finished_at=now - dt.timedelta(seconds=397)
        )
        steps.filter(step_key="cooling_off_period").update(
            status="completed",
            started_at=now - dt.timedelta(seconds=397),
            finished_at=now - dt.timedelta(seconds=340 + 10 * i),
        )
        Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    delayed, retrying = runs[3], runs[4]
    Run.objects.filter(pk=delayed.pk).update(started_at=now - dt.timedelta(seconds=150))
    ActionRun.objects.filter(run=delayed, step_key="record_the_claim_and_its_documents").update(
        started_at=now - dt.timedelta(seconds=150), finished_at=now - dt.timedelta(seconds=146)
    )
    ActionRun.objects.filter(run=delayed, step_key="cooling_off_period").update(
        started_at=now - dt.timedelta(seconds=140)
    )
    ActionRun.objects.filter(run=retrying, step_key="cooling_off_period").update(
        status="pending", attempts=1, error_code="HTTP_503"
    )
    return delayed


def test_run_and_monitoring_pages_fit_1366_and_390(
    chromium: Path,
    asgi_server: AsgiServer,
    admin_user: Any,
    make_user: Any,
    drain: Any,
    monkeypatch: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # logins between Playwright's steps

    delayed = seed(drain)
    for name in ("Claims", "Billing and collections"):
        queue = Group.objects.get_or_create(name=name)[0]
        agent = make_user(f"agent-{name.split()[0].lower()}", groups=(name,))
        tasks.task_create(title="Open", queue=queue, routing="claim")
        tasks.task_create(
            title="Late", queue=queue, assignee=agent, due_at=timezone.now() - dt.timedelta(hours=2)
        )
    SHOTS.mkdir(parents=True, exist_ok=True)
    url = asgi_server.url
    pages = {
        "run": f"/admin/automation/run/{delayed.pk}/change/",
        "monitoring": "/monitoring/",
    }
    overflows = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            for width in (1366, 390):
                context = browser.new_context(viewport={"width": width, "height": 900})
                context.add_cookies([session_cookie(admin_user, url)])
                # no other origin: the pages must not need one
                context.route(
                    lambda u: not u.startswith(url), lambda route: route.abort("blockedbyclient")
                )
                page = context.new_page()
                for name, path in pages.items():
                    page.goto(f"{url}{path}")
                    page.wait_for_load_state("networkidle")
                    if name == "run":
                        health = page.locator(".run-health")
                        expect(health).to_have_attribute("data-indicator", "delayed")
                        expect(page.locator(".gantt-row[data-key]")).to_have_count(4)
                        expect(page.locator(".gantt-bar").first).to_be_visible()
                    else:
                        expect(page.locator(f"#active-run-{delayed.pk}")).to_be_visible()
                        expect(page.locator("#tasks-by-queue")).to_contain_text("Billing")
                        expect(page.locator("#tasks-by-assignee")).to_contain_text("agent-claims")
                    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
                    overflows[f"{name} at {width} px"] = page.evaluate(OVERFLOW)
                context.close()
        finally:
            browser.close()
    assert all(extra <= 0 for extra in overflows.values()), f"pages scroll sideways: {overflows}"
