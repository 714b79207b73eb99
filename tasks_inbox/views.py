"""Inbox pages: my tasks, my queues, the team view, the task page, notifications.

Thin views: a selector for GET, a service for POST. Every task comes from the visibility
selector; one outside it is a 404. Claim, transitions, completion, notes and marking
notifications read answer htmx requests with the fragment to swap (no full reload) and
plain requests with a redirect.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from automation.models import Note
from config.errors import DomainError, NotFound
from config.requests import HtmxHttpRequest, request_user
from tasks_inbox import services
from tasks_inbox.api.pagination import requested_sort
from tasks_inbox.filters import TaskFilter
from tasks_inbox.form_schema import task_form
from tasks_inbox.keyset import InvalidCursor, bounded_count, keyset_page
from tasks_inbox.lifecycles import lifecycle_spec
from tasks_inbox.models import PRIORITY_BY_NAME, Task, TaskHistory
from tasks_inbox.selectors import (
    SORTS,
    notification_unread_count,
    notifications_for,
    queues_managed_by,
    task_available_transitions,
    task_get,
    task_history,
    task_inbox,
    task_roles,
    tasks_visible_to,
    team_workload,
    user_queues,
)
from workflows.models import LifecycleState

PAGE_SIZE = 25

SCOPES = {
    "mine": ("My tasks", "inbox:my-tasks"),
    "queues": ("My queues", "inbox:queues"),
    "team": ("Team", "inbox:team"),
}


def _visible_task(request: HtmxHttpRequest, pk: int) -> Task:
    try:
        return task_get(user=request.user, task_id=pk)
    except NotFound:
        raise Http404("No such task.") from None


# --- lists ------------------------------------------------------------------------------


def _task_list(request: HtmxHttpRequest, scope: str) -> HttpResponse:
    params = request.GET.copy()
    if "open" not in params and not params.get("state"):
        params["open"] = "true"
    task_filter = TaskFilter(
        params, queryset=task_inbox(user=request.user, scope=scope), request=request
    )
    listed = task_filter.qs
    sort = requested_sort(params)
    try:
        page = keyset_page(listed, sort=sort, cursor=request.GET.get("cursor"), size=PAGE_SIZE)
    except InvalidCursor:  # a garbled or stale link: the first page
        page = keyset_page(listed, sort=sort, cursor=None, size=PAGE_SIZE)
    total, more = bounded_count(listed)
    query = params.copy()
    query.pop("cursor", None)
    query.pop("page", None)
    title, url_name = SCOPES[scope]
    context: dict[str, Any] = {
        "title": title,
        "scope": scope,
        "scopes": [(key, label, reverse(name)) for key, (label, name) in SCOPES.items()],
        "page": page,
        "tasks": page.rows,
        "total": total,
        "total_more": more,
        "filters": params,
        "query": query.urlencode(),
        "states": sorted(set(LifecycleState.objects.values_list("key", flat=True))),
        "priorities": list(PRIORITY_BY_NAME),
        "sorts": SORTS,
        "list_url": reverse(url_name),
    }
    if scope == "queues":
        context["my_queues"] = list(user_queues(request.user).values_list("name", flat=True))
    if scope == "team":
        context["managed"] = list(queues_managed_by(request.user).values_list("pk", "name"))
        context["workload"] = team_workload(user=request.user)
    if request.htmx and request.htmx.target == "task-list":
        return render(request, "tasks_inbox/partials/task_table.html", context)
    return render(request, "tasks_inbox/task_list.html", context)


@login_required
@require_GET
def my_tasks(request: HtmxHttpRequest) -> HttpResponse:
    """Open tasks assigned to me."""
    return _task_list(request, "mine")


@login_required
@require_GET
def my_queues(request: HtmxHttpRequest) -> HttpResponse:
    """Unassigned tasks of my queues, to claim."""
    return _task_list(request, "queues")


@login_required
@require_GET
def team(request: HtmxHttpRequest) -> HttpResponse:
    """Every task of the queues I manage (all queues for staff), with the workload."""
    return _task_list(request, "team")


# --- the task page ----------------------------------------------------------------------


def _panel_context(
    request: HtmxHttpRequest,
    task: Task,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    error: str = "",
    notice: str = "",
) -> dict[str, Any]:
    spec = lifecycle_spec(task.lifecycle)
    roles = task_roles(task, request.user)
    available = task_available_transitions(task, request.user, spec, roles=roles)
    completing = [t for t in available if spec.is_completing(t)]
    has_form = bool(task.form_fields)
    buttons = [
        {
            "action": t.action,
            "label": t.label,
            "description": t.description,
            "required_input": t.required_input,
            "cancels": spec.states[t.to_state].is_cancellation,
        }
        for t in available
        if not (has_form and spec.is_completing(t))
    ]
    state = spec.states.get(task.state)
    return {
        "task": task,
        "state_label": state.label if state else task.state,
        "buttons": buttons,
        "can_complete": bool(completing) and has_form,
        "can_claim": task.is_open
        and task.assignee_id is None
        and bool(roles & {"queue_member", "manager", "staff"}),
        "fields": task_form(task.form).rendered(
            values if values is not None else (task.result or {}), errors or {}
        ),
        "form_errors": [
            m for path, msgs in (errors or {}).items() if not path.startswith("data.") for m in msgs
        ],
        "history": _history(task),
        "error": error,
        "notice": notice,
    }


def _history(task: Task) -> list[tuple[TaskHistory, str]]:
    """Each history row with its input as one line of text."""
    rows = []
    for row in task_history(task):
        values = row.input if isinstance(row.input, dict) else {}
        details = " · ".join(
            f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in values.items()
            if value not in (None, "", [], {})
        )
        rows.append((row, details))
    return rows


def _notes(task: Task) -> list[Note]:
    return list(
        Note.objects.filter(
            content_type=ContentType.objects.get_for_model(Task), object_id=str(task.pk)
        )
        .select_related("author")
        .order_by("-created_at", "-id")[:100]
    )


@login_required
@require_GET
def task_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The task: related object, form, allowed transitions, history, notes, due times."""
    task = _visible_task(request, pk)
    context = _panel_context(request, task)
    context["notes"] = _notes(task)
    context["related"] = task.related if task.content_type_id else None
    context["origin_run"] = task.origin_run if task.origin_run_id else None
    # the plan (parent task) is named only to a viewer who may see it
    context["parent"] = (
        tasks_visible_to(request.user).filter(pk=task.parent_id).first() if task.parent_id else None
    )
    return render(request, "tasks_inbox/task_detail.html", context)


def _after_action(
    request: HtmxHttpRequest,
    task_id: int,
    *,
    error: str = "",
    notice: str = "",
    values: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
) -> HttpResponse:
    """The fragment htmx swaps in (the list row or the task panel), or a redirect."""
    try:
        task = task_get(user=request.user, task_id=task_id)
    except NotFound:
        task = None
    if request.htmx:
        if request.POST.get("from") == "list":
            return render(
                request,
                "tasks_inbox/partials/task_row.html",
                {
                    "task": task,
                    "row_error": error,
                    "row_notice": notice,
                    "task_id": task_id,
                    "scope": request.POST.get("scope", ""),
                },
            )
        if task is None:
            return render(request, "tasks_inbox/partials/gone.html", {"notice": notice})
        return render(
            request,
            "tasks_inbox/partials/task_panel.html",
            _panel_context(request, task, values=values, errors=errors, error=error, notice=notice),
        )
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    if task is None:
        return redirect("inbox:my-tasks")
    return redirect("inbox:task", pk=task_id)


def _domain_call(request: HtmxHttpRequest, pk: int, call: Any, notice: str) -> HttpResponse:
    try:
        call()
    except NotFound:
        raise Http404("No such task.") from None
    except DomainError as exc:
        return _after_action(request, pk, error=exc.message)
    return _after_action(request, pk, notice=notice)


@login_required
@require_POST
def task_claim(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _domain_call(
        request,
        pk,
        lambda: services.task_claim(task_id=pk, actor=request_user(request)),
        "You claimed the task.",
    )


@login_required
@require_POST
def task_transition(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    action = request.POST.get("action", "")
    data = {
        key[len("input_") :]: value
        for key, value in request.POST.items()
        if key.startswith("input_") and isinstance(value, str) and value.strip()
    }
    return _domain_call(
        request,
        pk,
        lambda: services.task_transition(
            task_id=pk, action=action, actor=request_user(request), input=data
        ),
        f"Done: {action.replace('_', ' ')}.",
    )


@login_required
@require_POST
def task_complete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Submit the task's form; errors come back next to their fields."""
    task = _visible_task(request, pk)
    data = task_form(task.form, data=request.POST).submitted()
    try:
        services.task_complete(task_id=pk, actor=request_user(request), data=data)
    except NotFound:
        raise Http404("No such task.") from None
    except DomainError as exc:
        if request.htmx:
            return _after_action(request, pk, error=exc.message, values=data, errors=exc.fields)
        return _after_action(request, pk, error=exc.message)
    return _after_action(request, pk, notice="Task completed.")


@login_required
@require_POST
def task_note(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    error = ""
    try:
        services.task_note_add(
            task_id=pk, actor=request_user(request), text=request.POST.get("note", "")
        )
    except NotFound:
        raise Http404("No such task.") from None
    except DomainError as exc:
        error = exc.message
    task = _visible_task(request, pk)
    if request.htmx:
        return render(
            request,
            "tasks_inbox/partials/notes.html",
            {"task": task, "notes": _notes(task), "note_error": error},
        )
    if error:
        messages.error(request, error)
    return redirect("inbox:task", pk=pk)


# --- notifications ----------------------------------------------------------------------


@login_required
@require_GET
def notifications(request: HtmxHttpRequest) -> HttpResponse:
    unread_only = request.GET.get("unread") == "1"
    listed = notifications_for(user=request_user(request), unread_only=unread_only)
    try:
        page = keyset_page(
            listed, sort="-created", cursor=request.GET.get("cursor"), size=PAGE_SIZE
        )
    except InvalidCursor:  # a garbled or stale link: the first page
        page = keyset_page(listed, sort="-created", cursor=None, size=PAGE_SIZE)
    return render(
        request, "tasks_inbox/notifications.html", {"page": page, "unread_only": unread_only}
    )


@login_required
@require_POST
def notification_read(request: HtmxHttpRequest, pk: int | None = None) -> HttpResponse:
    """Mark one notification (or, without ``pk``, all of them) read."""
    services.notification_mark_read(user=request_user(request), notification_id=pk)
    unread_only = request.POST.get("unread") == "1"
    if not request.htmx:
        return redirect(reverse("inbox:notifications") + ("?unread=1" if unread_only else ""))
    context: dict[str, Any] = {
        "unread_notifications": notification_unread_count(user=request_user(request)),
        "oob": True,
        "unread_only": unread_only,
    }
    if pk is None:
        listed = notifications_for(user=request_user(request), unread_only=unread_only)
        context["page"] = keyset_page(listed, sort="-created", cursor=None, size=PAGE_SIZE)
        return render(request, "tasks_inbox/partials/notification_list.html", context)
    context["notification"] = notifications_for(user=request_user(request)).filter(pk=pk).first()
    return render(request, "tasks_inbox/partials/notification_row.html", context)


# --- SLA compliance ---------------------------------------------------------------------

COMPLIANCE_WINDOWS = {24: "24 hours", 168: "7 days", 720: "30 days", 2160: "90 days"}


@login_required
@require_GET
def sla_compliance(request: HtmxHttpRequest) -> HttpResponse:
    """SLA compliance per config and per day, with charts (staff and queue managers; over
    the tasks they may see)."""
    import pygal

    from config.charts import chart, chart_svg
    from tasks_inbox.api.sla import may_see_compliance
    from tasks_inbox.selectors import sla_compliance_daily, sla_compliance_report

    if not may_see_compliance(request.user):
        raise PermissionDenied("SLA compliance is for staff and queue managers.")
    try:
        hours = int(request.GET.get("hours") or 168)
    except ValueError:
        hours = 168
    hours = hours if hours in COMPLIANCE_WINDOWS else 168
    until = timezone.now()
    since = until - timedelta(hours=hours)
    user = None if request.user.is_staff else request.user
    rows = sla_compliance_report(since=since, until=until, user=user)
    daily = sla_compliance_daily(since=since, until=until, user=user)
    share = chart(pygal.HorizontalBar, "Completed within target (%)", range=(0, 100))
    share.x_labels = [row["name"] for row in rows]
    share.add("within target", [row["within_target_pct"] for row in rows])

    per_day = chart(pygal.Line, "Within target per day (%)", range=(0, 100), x_label_rotation=30)
    per_day.x_labels = [row["day"].strftime("%d %b") for row in daily]
    per_day.add("within target", [row["within_target_pct"] for row in daily])

    breaches = chart(pygal.Bar, "Breaches")
    breaches.x_labels = [row["name"] for row in rows]
    breaches.add("breaches", [row["breaches"] for row in rows])

    context = {
        "hours": hours,
        "windows": COMPLIANCE_WINDOWS,
        "since": since,
        "until": until,
        "rows": rows,
        "daily": daily,
        "charts": [chart_svg(share), chart_svg(per_day), chart_svg(breaches)],
    }
    return render(request, "tasks_inbox/sla_compliance.html", context)
