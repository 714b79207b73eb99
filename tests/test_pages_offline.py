"""Every page of the site in a real browser, with no internet: headless Chromium
(Playwright) against a live server on the demo data, as an agent, a queue manager and staff.

Requests to any other origin are blocked (and counted) with ``page.route``. Each page must
answer, load with no failed request and no console error, request nothing from another
origin, and fit a 390 px wide screen with no horizontal scroll. At 1366 px the step graph
and the runs list are not clipped. Screenshots at both widths are kept in
test-artifacts/pages/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from automation.models import Run
from crm.models import Lead
from tasks_inbox.models import Notification
from tasks_inbox.selectors import tasks_visible_to
from tests.conftest import ARTIFACTS, REQUIRE_SERVICES
from workflows import demo
from workflows.models import Workflow
from workflows.services import workflow_save

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ARTIFACTS / "pages"
WIDE, NARROW = (1366, 900), (390, 844)

FAILING = {
    "slug": "lead-check-email",
    "name": "Check the lead's email",
    "triggers": [{"event_type": "lead.created"}],
    "steps": [
        {
            "key": "check",
            "type": "validate",
            "config": {
                "condition": {"field": "email", "operator": "contains", "value": "@"},
                "message": "the lead has no email",
            },
        }
    ],
}


def _needs(thing: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but this test {thing}")
    pytest.skip(thing)


@pytest.fixture
def browser_tools() -> Any:
    if not CHROMIUM.exists():
        _needs(f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _needs("needs the playwright package (pip install -r requirements-dev.txt)")
    return sync_playwright


@pytest.fixture
def site(drain: Any) -> dict[str, Any]:
    """The demo data, a lead that starts the demo workflow and one that fails, and a few
    notifications: every page has something to show."""
    with transaction.atomic():
        demo.seed()
        workflow_save(document=FAILING)
    alice = get_user_model().objects.get(username="alice")
    with transaction.atomic():
        lead = Lead.objects.create(
            company_name="Initech",
            contact_name="Bill Lumbergh",
            email="bill@initech.example",
            annual_revenue=2_500_000,
            budget=80_000,
            owner=alice,
        )
        Lead.objects.create(company_name="Nameless Ltd", annual_revenue=10_000)
    drain()
    users = {
        u.username: u
        for u in get_user_model().objects.filter(username__in=["alice", "maria", "demo"])
    }
    for user in users.values():
        for text in ("A task was assigned to you", "An SLA is about to breach"):
            Notification.objects.create(recipient=user, message=text, link="/inbox/")
    tasks = {
        role: tasks_visible_to(users[name]).filter(is_open=True).order_by("pk").first()
        for role, name in (("agent", "alice"), ("manager", "maria"), ("staff", "demo"))
    }
    assert all(tasks.values()), f"the demo data gives each role a task to open: {tasks}"
    failed = Run.objects.filter(status="failed").first()
    assert failed is not None, "the failing workflow failed a run"
    return {
        "users": users,
        "lead": lead,
        "tasks": tasks,
        "failed_run": failed,
        "workflow": Workflow.objects.get(slug="qualify-high-value-leads"),
    }


@dataclass
class Watch:
    """What one page did: requests that failed, console errors, other-origin requests."""

    origin: str
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    other_origin: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.failed.clear()
        self.console_errors.clear()
        self.other_origin.clear()


def _watch(page: Any, origin: str) -> Watch:
    watch = Watch(origin=origin)

    def route(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" == origin:
            route.continue_()
        else:
            watch.other_origin.append(url)
            route.abort()

    page.route("**/*", route)
    page.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and watch.console_errors.append(f"{msg.text} @ {msg.location.get('url', '')}")
        ),
    )
    page.on("pageerror", lambda exc: watch.console_errors.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: watch.failed.append(f"{req.url}: {req.failure}"))
    page.on(
        "response",
        lambda resp: resp.status >= 400 and watch.failed.append(f"{resp.url}: HTTP {resp.status}"),
    )
    return watch


def _pages(role: str, site: dict[str, Any]) -> list[tuple[str, str]]:
    task, lead = site["tasks"][role], site["lead"]
    common = [
        ("home", "/"),
        ("inbox", "/inbox/"),
        ("queues", "/inbox/queues/"),
        ("team", "/inbox/team/"),
        ("task", f"/inbox/tasks/{task.pk}/"),
        ("notifications", "/inbox/notifications/"),
        ("notifications-unread", "/inbox/notifications/?unread=1"),
        ("api-docs", "/api/docs/"),
        ("api-root", "/api/v1/"),
    ]
    if role == "agent":
        return common
    if role == "manager":
        return [*common, ("sla", "/inbox/sla/")]
    run, workflow = site["failed_run"], site["workflow"]
    return [
        *common,
        ("sla", "/inbox/sla/"),
        ("monitoring", "/monitoring/"),
        ("admin", "/admin/"),
        ("admin-workflows", "/admin/workflows/workflow/"),
        ("admin-workflow", f"/admin/workflows/workflow/{workflow.pk}/change/"),
        ("admin-workflow-add", "/admin/workflows/workflow/add/"),
        ("admin-runs", "/admin/automation/run/"),
        ("admin-run", f"/admin/automation/run/{run.pk}/change/"),
        ("admin-tasks", "/admin/tasks_inbox/task/"),
        ("admin-task", f"/admin/tasks_inbox/task/{site['tasks']['agent'].pk}/change/"),
        ("admin-leads", "/admin/crm/lead/"),
        ("admin-lead", f"/admin/crm/lead/{lead.pk}/change/"),
    ]


def _log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", demo.DEMO_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# Chart tooltips come from static/js/charts.js: every bar and dot has a <title>.
TOOLTIPS = """() => {
  const triggers = [...document.querySelectorAll("svg.pygal-chart .tooltip-trigger")];
  const titled = triggers.filter(t => t.querySelector(":scope > title"));
  return {triggers: triggers.length, untitled: triggers.length - titled.length,
          sample: titled.length ? titled[0].querySelector("title").textContent : ""};
}"""
CLIPPED = """selector => [...document.querySelectorAll(selector)].map(
  box => box.scrollWidth - box.clientWidth).reduce((a, b) => Math.max(a, b), 0)"""


def _visit(
    page: Any, watch: Watch, base: str, name: str, path: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Open ``path`` at 1366 and at 390 px; return what went wrong (empty if nothing) and
    the page's chart tooltips (None without charts)."""
    found: dict[str, Any] = {}
    for width, height in (WIDE, NARROW):
        page.set_viewport_size({"width": width, "height": height})
        watch.reset()
        response = page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
        if name == "api-docs":  # Swagger UI draws the schema it fetched
            page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
        status = response.status if response is not None else 0
        overflow = page.evaluate(OVERFLOW)
        clipped = page.evaluate(CLIPPED, ".graph, #changelist .results") if width == 1366 else 0
        tooltips = page.evaluate(TOOLTIPS)
        if tooltips["triggers"]:
            found["tooltips"] = tooltips
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        problems = {
            "status": status if status >= 400 or status == 0 else None,
            "failed": list(watch.failed),
            "console_errors": list(watch.console_errors),
            "other_origin": list(watch.other_origin),
            "overflow_px": overflow if overflow > 0 else None,
            "clipped_px": clipped if clipped > 0 else None,
            "untitled_tooltips": tooltips["untitled"] or None,
        }
        found[str(width)] = {k: v for k, v in problems.items() if v}
    return {k: v for k, v in found.items() if v and k != "tooltips"}, found.get("tooltips")


@pytest.mark.timeout(900)
def test_every_page_works_offline_and_fits_a_phone(
    browser_tools: Any,
    asgi_server: Any,
    site: dict[str, Any],
    settings: Any,
    monkeypatch: Any,
) -> None:
    # Playwright's sync API runs an event loop in this thread; the ORM calls are plain
    # blocking calls made between its steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    SHOTS.mkdir(parents=True, exist_ok=True)
    # daphne as the Procfile runs it, so the pages' live-update socket has its endpoint.
    base = asgi_server.url
    origin = f"{urlsplit(base).scheme}://{urlsplit(base).netloc}"
    problems: dict[str, Any] = {}
    visited = 0
    other_origin_total = 0
    tooltips: dict[str, Any] = {}

    with browser_tools() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # logged out: the home page and the login page
            page = browser.new_context().new_page()
            watch = _watch(page, origin)
            for name, path in (("login", "/accounts/login/"), ("home-anonymous", "/")):
                found, _ = _visit(page, watch, base, name, path)
                visited += 1
                if found:
                    problems[name] = found
            assert "Log in" in page.locator("main").inner_text()

            for role, username in (("agent", "alice"), ("manager", "maria"), ("staff", "demo")):
                context = browser.new_context()
                page = context.new_page()
                watch = _watch(page, origin)
                _log_in(page, base, username)
                assert page.locator(".who").inner_text().startswith(username)
                for name, path in _pages(role, site):
                    found, chart_tips = _visit(page, watch, base, f"{role}-{name}", path)
                    if chart_tips:
                        tooltips[f"{role}-{name}"] = chart_tips
                    visited += 1
                    other_origin_total += sum(
                        len(v.get("other_origin", [])) for v in found.values()
                    )
                    if found:
                        problems[f"{role} {path}"] = found
                context.close()
        finally:
            browser.close()

    (SHOTS / "problems.json").write_text(json.dumps(problems, indent=2, sort_keys=True))
    assert visited == 2 + 9 + 10 + 21
    assert other_origin_total == 0, problems
    assert problems == {}
    # the monitoring charts have tooltips of our own (any chart without one is a problem)
    assert "staff-monitoring" in tooltips, tooltips
    assert tooltips["staff-monitoring"]["untitled"] == 0
    assert ": " in tooltips["staff-monitoring"]["sample"], tooltips
    for shot in ("staff-monitoring-390.png", "staff-admin-lead-1366.png", "agent-task-390.png"):
        assert (SHOTS / shot).stat().st_size > 10_000
