"""Live pages in a real browser: headless Chromium (Playwright) against daphne, the Procfile's
ASGI server, started as a subprocess on the test database and the test Redis (the channel
layer every process publishes into).

- Two agents of one queue have its page open; agent A claims a task; agent B's page drops it
  without a reload.
- B's notification badge counts a notification made in another process (this one).
- An agent of another queue, page open all along, hears nothing about that task: their page
  records every message its socket receives, and a marker notification sent to them last
  closes the record (a socket delivers in order).
- The server restarts; the page reconnects and shows what changed meanwhile.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test import Client

from automation.live import publish_after_commit
from tasks_inbox import services
from tasks_inbox.models import Notification
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS
from tests.servers import AsgiServer

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

# Record what the page's socket hands to the page (live.js dispatches each message).
RECORD = (
    "window.heard = [];"
    "document.addEventListener('live:message', (e) => window.heard.push(e.detail));"
)


def session_cookie(user: Any, url: str) -> dict[str, Any]:
    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": url}


def committed(call: Any) -> Any:
    """Run ``call`` in a transaction that commits, in a thread of its own: this thread runs
    Playwright's event loop, and publishing after the commit is blocking code."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with transaction.atomic():
                result["value"] = call()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert "value" in result, "the change failed (see the log above)"
    return result["value"]


def test_a_claim_drops_from_the_other_agents_queue_page_and_outsiders_hear_nothing(
    chromium: Path, asgi_server: AsgiServer, make_user: Any, monkeypatch: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls below are
    # plain blocking calls made between its steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ana = make_user("ana", groups=("Claims",))
    ben = make_user("ben", groups=("Claims",))
    olga = make_user("olga", groups=("Billing",))
    claims = Group.objects.get(name="Claims")
    task = committed(
        lambda: services.task_create(title="Check claim C-9", queue=claims, routing="claim")
    )
    later = committed(
        lambda: services.task_create(title="Check claim C-10", queue=claims, routing="claim")
    )
    url = asgi_server.url

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        pages = {}
        try:
            for name, user, path in (
                ("ana", ana, "/inbox/queues/"),
                ("ben", ben, "/inbox/queues/"),
                ("olga", olga, "/inbox/"),
            ):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([session_cookie(user, url)])
                context.add_init_script(RECORD)
                page = context.new_page()
                page.goto(f"{url}{path}")
                page.locator("html[data-live-socket=open]").wait_for(timeout=15000)
                pages[name] = page
            a, b, outsider = pages["ana"], pages["ben"], pages["olga"]
            expect(b.locator(f"#task-row-{task.pk}")).to_contain_text("Check claim C-9")
            b.evaluate("window.stillHere = 'queue'")

            # When agent A claims the task
            with a.expect_response(lambda r: r.url.endswith(f"/inbox/tasks/{task.pk}/claim/")):
                a.locator(f"#task-row-{task.pk} button.claim").click()
            claimed_at = time.monotonic()
            # Then B's queue page drops it, without a reload, within a second of the answer
            b.locator(f"#task-row-{task.pk}").wait_for(state="detached", timeout=1000)
            dropped_after = time.monotonic() - claimed_at
            assert services.Task.objects.get(pk=task.pk).assignee == ana
            assert b.evaluate("window.stillHere") == "queue"
            expect(b.locator(f"#task-row-{later.pk}")).to_be_visible()
            b.screenshot(path=str(ARTIFACTS / "live-queue-after-claim.png"), full_page=True)

            # When a task is given to B in another process (this one)
            expect(b.locator("#unread-badge")).to_have_count(0)
            committed(lambda: services.task_create(title="Call the broker", assignee=ben))
            # Then B's badge counts the notification
            expect(b.locator("#unread-badge")).to_have_text("1", timeout=5000)
            assert b.evaluate("window.stillHere") == "queue"

            # And the agent outside the queue heard of none of it: a marker notification,
            # sent last, is the first and only thing their socket brought
            def marker() -> Notification:
                notification = Notification.objects.create(recipient=olga, message="marker")
                publish_after_commit("notification", {"id": notification.pk})
                return notification

            marker_id = committed(marker).pk
            expect(outsider.locator("#unread-badge")).to_have_text("1", timeout=5000)
            heard = outsider.evaluate("window.heard")
            assert heard == [{"topic": "notification", "id": marker_id}]
            # while B's socket did hear about the queue (and nothing about a task B can't open)
            ben_heard = b.evaluate("window.heard")
            assert {"topic": "queue", "id": claims.pk} in ben_heard
            assert not [m for m in ben_heard if m["topic"] == "task" and m["id"] == task.pk]
        finally:
            browser.close()
    print(f"\nB's page dropped the claimed row {dropped_after * 1000:.0f} ms after A's claim")


def test_after_a_server_restart_the_page_reconnects_and_catches_up(
    chromium: Path, asgi_server: AsgiServer, make_user: Any, monkeypatch: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ana = make_user("ana", groups=("Claims",))
    ben = make_user("ben", groups=("Claims",))
    claims = Group.objects.get(name="Claims")
    task = committed(
        lambda: services.task_create(title="Check claim C-11", queue=claims, routing="claim")
    )
    url = asgi_server.url

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([session_cookie(ben, url)])
            page = context.new_page()
            page.goto(f"{url}/inbox/queues/")
            page.locator("html[data-live-socket=open]").wait_for(timeout=15000)
            expect(page.locator(f"#task-row-{task.pk}")).to_be_visible()
            page.evaluate("window.stillHere = 'queue'")

            # When the server stops, the task is claimed meanwhile (nobody hears of it),
            # and the server comes back
            asgi_server.stop()
            page.locator("html[data-live-socket=closed]").wait_for(timeout=15000)
            committed(lambda: services.task_claim(task_id=task.pk, actor=ana))
            asgi_server.start()

            # Then the page reconnects and drops the row it missed the news of
            page.locator("html[data-live-socket=open]").wait_for(timeout=60000)
            page.locator(f"#task-row-{task.pk}").wait_for(state="detached", timeout=10000)
            assert page.evaluate("window.stillHere") == "queue"
        finally:
            browser.close()
