"""The inbox in a real browser: headless Chromium (Playwright) on a server this test starts,
with a real Celery worker on PostgreSQL and Redis.

Log in, open the queue, claim a task, fill its form, complete it, and watch the run that
waits on it resume on the worker and the next task appear in the inbox; claim and
completion swap fragments (htmx) without reloading the page. Screenshots of the inbox and
the task page are kept in test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from automation.events import emit
from automation.models import Run
from tasks_inbox.models import Task
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS, wait_for
from workflows.services import workflow_save

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PASSWORD = "correct-horse-42!"

WORKFLOW = {
    "slug": "claims-check",
    "name": "Check a claim, then pay it",
    "triggers": [{"event_type": "claim.filed"}],
    "steps": [
        {
            "key": "check",
            "type": "create_task",
            "config": {
                "title": "Check claim {{claim_no}}",
                "queue": "Claims",
                "routing": "claim",
                "priority": "high",
                "wait": True,
                "form": {
                    "fields": [
                        {
                            "name": "amount",
                            "type": "number",
                            "label": "Amount to pay",
                            "min": 0,
                            "required": True,
                        },
                        {
                            "name": "decision",
                            "type": "select",
                            "label": "Decision",
                            "choices": ["pay", "refuse"],
                            "required": True,
                        },
                        {"name": "notes", "type": "textarea", "label": "Notes"},
                    ]
                },
            },
        },
        {
            "key": "pay",
            "type": "create_task",
            "config": {
                "title": "Pay {{steps.check.result.amount}} on claim {{claim_no}} "
                "({{steps.check.result.decision}})",
                "assignee": "{{steps.check.completed_by.username}}",
                "priority": "urgent",
            },
        },
    ],
}


def test_claim_fill_complete_and_the_run_resumes(
    chromium: Path,
    live_server: Any,
    celery_worker: Any,
    make_user: Any,
    settings: Any,
    monkeypatch: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls below are
    # plain blocking calls made between its steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    ARTIFACTS.mkdir(exist_ok=True)

    # Given an agent of the Claims queue and a workflow that waits on a claim check
    make_user("ines", groups=("Claims",), password=PASSWORD)
    workflow_save(document=WORKFLOW)
    with transaction.atomic():
        emit("claim.filed", {"claim_no": "C-77"})
    check = wait_for(
        lambda: Task.objects.filter(title="Check claim C-77").first(),
        timeout=30,
        message="the worker to create the check task",
    )
    run = Run.objects.get(workflow__slug="claims-check")
    wait_for(lambda: Run.objects.get(pk=run.pk).status == "waiting", message="run waiting")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            # When she logs in and opens her queues
            page.goto(f"{live_server.url}/inbox/queues/")
            page.fill("#id_username", "ines")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/inbox/queues/")
            row = page.locator(f"#task-row-{check.pk}")
            expect(row).to_contain_text("Check claim C-77")
            page.screenshot(path=str(ARTIFACTS / "inbox-queues.png"), full_page=True)

            # and claims the task (an htmx swap of the row: no reload)
            page.evaluate("window.stillHere = 'claim'")
            row.locator("button.claim").click()
            expect(row).to_contain_text("You claimed the task.")
            expect(row).to_contain_text("in_progress")
            assert page.evaluate("window.stillHere") == "claim"

            # then fills in the form on the task page and completes it
            row.locator("a.open-task").click()
            page.wait_for_url(f"**/inbox/tasks/{check.pk}/")
            expect(page.locator("#task-state")).to_have_attribute("data-state", "in_progress")
            page.fill("#field-amount", "1250")
            page.select_option("#field-decision", "pay")
            page.fill("#field-notes", "Receipts check out.")
            page.screenshot(path=str(ARTIFACTS / "task-page.png"), full_page=True)
            page.evaluate("window.stillHere = 'complete'")
            page.click("#complete-button")
            expect(page.locator("#task-state")).to_have_attribute("data-state", "completed")
            expect(page.locator("#task-panel")).to_contain_text("Task completed.")
            assert page.evaluate("window.stillHere") == "complete"
            page.screenshot(path=str(ARTIFACTS / "task-page-completed.png"), full_page=True)

            # Then the run resumes on the worker and the next task appears in her inbox
            title = "Pay 1250 on claim C-77 (pay)"
            page.goto(f"{live_server.url}/inbox/")
            for _ in range(60):
                if title in page.locator("table.tasks").inner_text():
                    break
                page.wait_for_timeout(500)
                page.reload()
            expect(page.locator("table.tasks")).to_contain_text(title)
            page.screenshot(path=str(ARTIFACTS / "inbox-next-task.png"), full_page=True)
            page.get_by_role("link", name=title).click()
            expect(page.locator("#origin-run")).to_contain_text(
                f"Run {run.pk} of workflow 'Check a claim, then pay it'"
            )
            expect(page.locator("#origin-run")).to_contain_text("completed")
        finally:
            browser.close()

    run.refresh_from_db()
    assert run.status == "completed"
    steps = {ar.step_key: ar for ar in run.action_runs.all()}
    assert steps["check"].output["result"] == {
        "amount": 1250,
        "decision": "pay",
        "notes": "Receipts check out.",
    }
    assert steps["check"].output["completed_by"]["username"] == "ines"
    assert Task.objects.get(title=title).assignee.username == "ines"
    for name in ("inbox-queues.png", "task-page.png", "inbox-next-task.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
