"""Live run page and team summary in a real browser: headless Chromium against daphne (the
Procfile's server), a real Celery worker executing the run, on the test database and Redis
(the channel layer the worker publishes into).

- A run page shows its steps turning completed, one after the other, while the worker
  executes them: the step graph and the timeline recolour without a reload.
- A queue manager's team page moves a task from "(unassigned)" to the agent who claims it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group

from automation.events import emit
from automation.models import Run
from crm.models import Deal
from tasks_inbox import services
from tasks_inbox.models import Queue
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS, wait_for
from tests.servers import AsgiServer
from tests.test_live_pages import committed, session_cookie
from workflows.services import workflow_save

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

PAUSE = "4 seconds"
STEP_KEYS = ["first", "pause1", "second", "pause2", "third"]

# After each live refresh, what the run page shows: each step's status in the graph and in
# the timeline, and the indicator.
RECORD = """
window.seen = [];
document.addEventListener('live:refreshed', () => {
  const graph = {}, gantt = {};
  document.querySelectorAll('#live-run-fields g.step').forEach(
    (g) => { graph[g.dataset.key] = g.dataset.status; });
  document.querySelectorAll('#live-run-fields .gantt-row[data-key]').forEach(
    (r) => { gantt[r.dataset.key] = r.dataset.status; });
  const health = document.querySelector('#live-run-fields .run-health');
  window.seen.push({graph, gantt, indicator: health && health.dataset.indicator});
});
"""


def note(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "type": "add_note",
        "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": key},
    }


@pytest.mark.worker
def test_the_run_page_shows_its_steps_turning_completed_while_a_worker_runs_them(
    chromium: Path,
    asgi_server: AsgiServer,
    celery_worker: Any,
    admin_user: Any,
    monkeypatch: Any,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    workflow_save(
        document={
            "slug": "live-steps",
            "name": "Live steps",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                note("first"),
                {"key": "pause1", "type": "delay", "config": {"for": PAUSE}},
                note("second"),
                {"key": "pause2", "type": "delay", "config": {"for": PAUSE}},
                note("third"),
            ],
        }
    )
    deal = Deal.objects.create(name="Live")
    url = asgi_server.url

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            context.add_cookies([session_cookie(admin_user, url)])
            context.add_init_script(RECORD)
            page = context.new_page()
            page.goto(f"{url}/admin/")  # the browser is up before the run starts

            # When an event starts the run on the worker
            committed(lambda: emit("deal.won", {"deal_id": deal.pk}))
            run = wait_for(
                lambda: Run.objects.filter(workflow__slug="live-steps").first(),
                timeout=30,
                message="the worker to start the run",
            )
            page.goto(f"{url}/admin/automation/run/{run.pk}/change/")
            page.locator("html[data-live-socket=open]").wait_for(timeout=15000)
            page.evaluate("window.stillHere = 'run'")
            first_seen = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#live-run-fields g.step')]"
                ".map((g) => [g.dataset.key, g.dataset.status]))"
            )
            assert first_seen["third"] != "completed", first_seen

            # Then the page recolours each step as it finishes, without a reload
            third = page.locator('#live-run-fields g.step[data-key="third"]')
            expect(third).to_have_attribute("data-status", "completed", timeout=60000)
            gantt_third = page.locator('#live-run-fields .gantt-row[data-key="third"]')
            expect(gantt_third).to_have_attribute("data-status", "completed")
            expect(page.locator("#live-run-fields .run-health")).to_have_attribute(
                "data-indicator", "finished", timeout=10000
            )
            expect(page.locator("#live-run-fields .run-progress")).to_have_text("5 of 5 steps done")
            assert page.evaluate("window.stillHere") == "run"
            page.screenshot(path=str(ARTIFACTS / "live-run-completed.png"), full_page=True)
            seen = page.evaluate("window.seen")
        finally:
            browser.close()

    run.refresh_from_db()
    assert run.status == "completed"
    # the page went through intermediate states: a step done while a later one was not
    intermediate = [
        s
        for s in seen
        if s["graph"].get("second") == "completed" and s["graph"].get("third") != "completed"
    ]
    assert intermediate, seen
    # the graph and the timeline always agreed
    assert all(s["graph"] == s["gantt"] for s in seen), seen
    order = [
        next((k for k in reversed(STEP_KEYS) if s["graph"].get(k) == "completed"), None)
        for s in seen
    ]
    assert [k for k in order if k] == sorted((k for k in order if k), key=STEP_KEYS.index), (
        "steps turned completed in their order"
    )


def test_the_team_summary_moves_a_claimed_task_to_its_new_assignee(
    chromium: Path, asgi_server: AsgiServer, make_user: Any, monkeypatch: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ana = make_user("ana", groups=("Claims",))
    manager = make_user("maria")
    claims = Group.objects.get(name="Claims")
    Queue.objects.create(group=claims).managers.add(manager)
    task = committed(
        lambda: services.task_create(title="Check claim C-20", queue=claims, routing="claim")
    )
    url = asgi_server.url

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            context.add_cookies([session_cookie(manager, url)])
            page = context.new_page()
            page.goto(f"{url}/inbox/team/")
            page.locator("html[data-live-socket=open]").wait_for(timeout=15000)
            summary = page.locator("#team-summary tbody")
            expect(summary).to_contain_text("(unassigned)")
            expect(summary).not_to_contain_text("ana")
            page.evaluate("window.stillHere = 'team'")

            # When the agent claims the task (in another process: this one)
            committed(lambda: services.task_claim(task_id=task.pk, actor=ana))

            # Then the manager's summary counts it as ana's, without a reload
            expect(summary.locator("tr").first).to_contain_text("ana", timeout=5000)
            expect(summary).not_to_contain_text("(unassigned)")
            expect(page.locator(f"#task-row-{task.pk}")).to_contain_text("ana")
            assert page.evaluate("window.stillHere") == "team"
        finally:
            browser.close()
