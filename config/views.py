"""Project-level views: the health check, the home page, error pages."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from automation import monitoring
from automation.models import Run, RunStatus
from config.api import api_not_found, api_server_error
from config.permissions import MONITORING_PERMISSION
from tasks_inbox.selectors import notifications_for, task_inbox, task_order
from workflows.models import Workflow

DASHBOARD_ROWS = 5

logger = logging.getLogger(__name__)


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"
        return f"{type(exc).__name__}: {exc}".strip()[:200]
    return None


def check_broker() -> str | None:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:  # any transport error means "down"
        return f"{type(exc).__name__}: {exc}".strip()[:200]
    return None


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability, for load balancers: 200 when both answer, else 503."""
    checks: dict[str, Any] = {}
    failed = False
    for name, probe in (("database", check_database), ("broker", check_broker)):
        error = probe()
        checks[name] = "ok" if error is None else {"status": "down", "error": error}
        failed = failed or error is not None
    if failed:
        logger.warning("healthz: %s", checks)
    return JsonResponse(
        {"status": "down" if failed else "ok", "checks": checks}, status=503 if failed else 200
    )


def home(request: HttpRequest) -> HttpResponse:
    """Logged out: what Flowdesk is and the way in. Logged in: a small dashboard."""
    context: dict[str, Any] = {"broker": settings.CELERY_BROKER_URL.split("://")[0]}
    if request.user.is_authenticated:
        context.update(dashboard(request.user))
    return render(request, "home.html", context)


def dashboard(user: User) -> dict[str, Any]:
    """My open and overdue tasks, what I may claim, my unread notifications; for holders of
    the monitoring permission the active runs, the recent failures and whether any workflow
    exists yet."""
    mine = task_inbox(user=user, scope="mine").filter(is_open=True)
    unread = notifications_for(user=user, unread_only=True)
    context: dict[str, Any] = {
        "my_tasks": list(task_order(mine, "due")[:DASHBOARD_ROWS]),
        "my_open": mine.count(),
        "my_overdue": mine.filter(due_at__lt=timezone.now()).count(),
        "claimable": task_inbox(user=user, scope="queues").filter(is_open=True).count(),
        "unread": list(unread[:DASHBOARD_ROWS]),
    }
    if user.has_perm(MONITORING_PERMISSION):
        failures = (
            Run.objects.filter(status=RunStatus.FAILED)
            .select_related("workflow")
            .order_by("-finished_at", "-id")
        )
        context.update(
            {
                "active_runs": monitoring.active_runs(limit=DASHBOARD_ROWS),
                "recent_failures": list(failures[:DASHBOARD_ROWS]),
                "workflow_count": Workflow.objects.count(),
                "recent_workflows": list(Workflow.objects.order_by("-updated_at")[:DASHBOARD_ROWS]),
            }
        )
    return context


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_server_error(request)
    return defaults.server_error(request)
