"""The task queue dashboard of the monitoring page, and which waiting steps are held up by
a late task. Registered with ``automation.monitoring`` from ``engine.register``.

Every figure is an aggregate query (a fixed number of queries, whatever the number of queues,
people or tasks):

- **open** tasks by queue (with how many are unassigned) and by assignee;
- **overdue**: open tasks past their due time or their SLA due time, or whose SLA breached
  (the same rule as ``selectors.queues_by_overdue``);
- **average completion time**: ``closed_at - created_at`` of the tasks closed in the window,
  by queue and by assignee;
- **workload distribution**: each assignee's share of the open assigned tasks, and how many
  people hold 1-2, 3-5, 6-10 and more than 10 open tasks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q
from django.utils import timezone

from tasks_inbox.models import Task

WORKLOAD_BANDS = ((1, 2), (3, 5), (6, 10), (11, None))
ROW_LIMIT = 50


def overdue_filter(now: dt.datetime) -> Q:
    return Q(due_at__lt=now) | Q(sla_due_at__lt=now) | Q(sla_breached_at__isnull=False)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return round(value.total_seconds() if isinstance(value, dt.timedelta) else float(value), 1)


def queue_dashboard(*, hours: int = 24) -> dict[str, Any]:
    """Open tasks by queue and by assignee, overdue counts, average completion time of the
    tasks closed in the last ``hours``, and the workload distribution. Six queries."""
    now = timezone.now()
    since = now - dt.timedelta(hours=hours)
    late = overdue_filter(now)
    open_tasks = Task.objects.filter(is_open=True).order_by()
    closed = Task.objects.filter(is_open=False, closed_at__gte=since).order_by()
    took = ExpressionWrapper(F("closed_at") - F("created_at"), output_field=DurationField())

    totals = open_tasks.aggregate(
        open=Count("id"),
        unassigned=Count("id", filter=Q(assignee__isnull=True)),
        overdue=Count("id", filter=late),
    )
    totals.update(
        {key: value for key, value in closed.aggregate(closed=Count("id"), avg=Avg(took)).items()}
    )
    totals["avg_completion_seconds"] = _seconds(totals.pop("avg"))

    queues: dict[Any, dict[str, Any]] = {}
    for row in open_tasks.values("queue_id", "queue__name").annotate(
        open=Count("id"),
        unassigned=Count("id", filter=Q(assignee__isnull=True)),
        overdue=Count("id", filter=late),
    ):
        queues[row["queue_id"]] = {
            "queue": row["queue__name"] or "(no queue)",
            "open": row["open"],
            "unassigned": row["unassigned"],
            "overdue": row["overdue"],
            "closed": 0,
            "avg_completion_seconds": None,
        }
    for row in closed.values("queue_id", "queue__name").annotate(n=Count("id"), avg=Avg(took)):
        entry = queues.setdefault(
            row["queue_id"],
            {
                "queue": row["queue__name"] or "(no queue)",
                "open": 0,
                "unassigned": 0,
                "overdue": 0,
            },
        )
        entry["closed"] = row["n"]
        entry["avg_completion_seconds"] = _seconds(row["avg"])

    people: dict[Any, dict[str, Any]] = {}
    for row in (
        open_tasks.filter(assignee__isnull=False)
        .values("assignee_id", "assignee__username")
        .annotate(open=Count("id"), overdue=Count("id", filter=late))
    ):
        people[row["assignee_id"]] = {
            "assignee": row["assignee__username"],
            "open": row["open"],
            "overdue": row["overdue"],
            "closed": 0,
            "avg_completion_seconds": None,
        }
    for row in (
        closed.filter(assignee__isnull=False)
        .values("assignee_id", "assignee__username")
        .annotate(n=Count("id"), avg=Avg(took))
    ):
        entry = people.setdefault(
            row["assignee_id"], {"assignee": row["assignee__username"], "open": 0, "overdue": 0}
        )
        entry["closed"] = row["n"]
        entry["avg_completion_seconds"] = _seconds(row["avg"])

    assigned = sum(p["open"] for p in people.values())
    busiest = max((p["open"] for p in people.values()), default=0)
    for entry in people.values():
        entry["share_pct"] = round(100 * entry["open"] / assigned, 1) if assigned else 0.0
        entry["bar_pct"] = round(100 * entry["open"] / busiest, 1) if busiest else 0.0
    bands = []
    for low, high in WORKLOAD_BANDS:
        count = sum(
            1 for p in people.values() if p["open"] >= low and (high is None or p["open"] <= high)
        )
        bands.append({"label": f"{low}-{high}" if high else f"{low}+", "people": count})

    by_queue = sorted(queues.values(), key=lambda q: (-q["open"], -q["overdue"], q["queue"]))
    by_assignee = sorted(people.values(), key=lambda p: (-p["open"], p["assignee"]))
    return {
        "hours": hours,
        "totals": totals,
        "by_queue": by_queue[:ROW_LIMIT],
        "by_assignee": by_assignee[:ROW_LIMIT],
        "workload_bands": bands,
    }


def late_waits(references: list[str]) -> set[str]:
    """Of the ``task:<id>`` references, those whose task is open and overdue or breached."""
    ids = {}
    for reference in references:
        kind, _, pk = reference.partition(":")
        if kind == "task" and pk.isascii() and pk.isdigit():
            ids[int(pk)] = reference
    if not ids:
        return set()
    late = Task.objects.filter(pk__in=list(ids), is_open=True).filter(
        overdue_filter(timezone.now())
    )
    return {ids[pk] for pk in late.values_list("pk", flat=True)}
