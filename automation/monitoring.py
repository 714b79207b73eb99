"""Reads for operations: active runs, throughput and failure rates, duration percentiles,
bottlenecks. Aggregated in the database (percentiles with PostgreSQL's percentile_cont;
on SQLite from a bounded sample).

Reads of human work (queues with overdue tasks, SLA compliance) come from the app that owns
those tables, which registers them with :func:`register_task_reports` from its
``AppConfig.ready()``; without one, those parts of the page are empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
)
from django.db.models.functions import TruncHour
from django.utils import timezone

from automation.models import ActionRun, Event, Run, RunStatus, StepStatus
from automation.statuses import RUN_OPEN_STATUSES
from config.aggregates import grouped_percentiles

SQLITE_SAMPLE = 5000


@dataclass(frozen=True)
class TaskReports:
    """The monitoring page's reads of human work, given by the app that owns it."""

    # (limit) -> [{"queue", "overdue"}]: queues with the most open tasks past due.
    overdue_queues: Callable[[int], list[dict[str, Any]]]
    # (hours) -> one row per SLA config over the last ``hours``.
    sla_compliance: Callable[[int], list[dict[str, Any]]]
    # (["task:42", ...]) -> the references whose task is open and overdue or breached.
    late_waits: Callable[[list[str]], set[str]] | None = None
    # (hours) -> the task queue dashboard (by queue, by assignee, totals).
    queue_dashboard: Callable[[int], dict[str, Any]] | None = None


_task_reports: TaskReports | None = None


def register_task_reports(reports: TaskReports) -> None:
    global _task_reports
    _task_reports = reports


def task_reports() -> TaskReports | None:
    """The reads of human work the owning app registered (None without one)."""
    return _task_reports


def _seconds(start: str, end: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def _window(hours: int) -> dt.datetime:
    return timezone.now() - dt.timedelta(hours=hours)


def active_runs(*, limit: int = 100) -> list[dict[str, Any]]:
    now = timezone.now()
    runs = (
        Run.objects.filter(status__in=RUN_OPEN_STATUSES)
        .select_related("workflow", "event")
        .order_by("created_at")[:limit]
    )
    current = {
        row["run_id"]: row["step_key"]
        for row in ActionRun.objects.filter(
            run__in=[r.pk for r in runs],
            status__in=[StepStatus.RUNNING, StepStatus.WAITING],
        ).values("run_id", "step_key")
    }
    return [
        {
            "id": run.pk,
            "workflow": run.workflow.slug,
            "status": run.status,
            "event_type": run.event.type,
            "current_step": current.get(run.pk),
            "created_at": run.created_at,
            "age_seconds": int((now - run.created_at).total_seconds()),
        }
        for run in runs
    ]


def _percentiles(
    queryset: Any, start: str, end: str, group: str
) -> dict[Any, dict[str, float | None]]:
    """p50/p95 of ``end - start`` in seconds, grouped by ``group``."""
    rows = grouped_percentiles(
        queryset, group=group, between=(start, end), fractions=(0.5, 0.95), sample=SQLITE_SAMPLE
    )
    return {
        key: {"p50": _as_seconds(p50), "p95": _as_seconds(p95)} for key, (p50, p95) in rows.items()
    }


def _as_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return round(value.total_seconds(), 3)
    return round(float(value), 3)


def workflow_metrics(*, hours: int = 24) -> list[dict[str, Any]]:
    """Per workflow in the window: runs by status, failure rate, runs/hour, p50/p95 seconds."""
    since = _window(hours)
    runs = Run.objects.filter(created_at__gte=since)
    counts: dict[str, dict[str, int]] = {}
    for row in runs.values("workflow__slug", "status").annotate(n=Count("id")):
        counts.setdefault(row["workflow__slug"], {})[row["status"]] = row["n"]
    durations = _percentiles(runs, "started_at", "finished_at", "workflow__slug")
    metrics = []
    for slug in sorted(counts):
        by_status = counts[slug]
        total = sum(by_status.values())
        finished = by_status.get(RunStatus.COMPLETED, 0) + by_status.get(RunStatus.FAILED, 0)
        metrics.append(
            {
                "workflow": slug,
                "runs": total,
                "by_status": by_status,
                "failure_rate": round(by_status.get(RunStatus.FAILED, 0) / finished, 4)
                if finished
                else 0.0,
                "runs_per_hour": round(total / hours, 3),
                "duration_p50_seconds": durations.get(slug, {}).get("p50"),
                "duration_p95_seconds": durations.get(slug, {}).get("p95"),
            }
        )
    return metrics


def throughput(*, hours: int = 24) -> list[dict[str, Any]]:
    """Runs started and failed per hour."""
    rows = (
        Run.objects.filter(created_at__gte=_window(hours))
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(started=Count("id"), failed=Count("id", filter=Q(status=RunStatus.FAILED)))
        .order_by("hour")
    )
    return [
        {"hour": row["hour"], "started": row["started"], "failed": row["failed"]} for row in rows
    ]


def bottlenecks(*, hours: int = 24, limit: int = 10) -> dict[str, Any]:
    """The slowest and most failing steps, and the queues with the most overdue tasks."""
    steps = ActionRun.objects.filter(run__created_at__gte=_window(hours))
    finished = steps.filter(started_at__isnull=False, finished_at__isnull=False)
    slowest = (
        finished.values("run__workflow__slug", "step_key", "type")
        .annotate(avg=Avg(_seconds("started_at", "finished_at")), n=Count("id"))
        .order_by("-avg")[:limit]
    )
    failing = (
        steps.values("run__workflow__slug", "step_key", "type")
        .annotate(failed=Count("id", filter=Q(status=StepStatus.FAILED)), n=Count("id"))
        .filter(failed__gt=0)
        .order_by("-failed")[:limit]
    )
    return {
        "slowest_steps": [
            {
                "workflow": r["run__workflow__slug"],
                "step": r["step_key"],
                "type": r["type"],
                "runs": r["n"],
                "avg_seconds": _as_seconds(r["avg"]),
            }
            for r in slowest
        ],
        "failing_steps": [
            {
                "workflow": r["run__workflow__slug"],
                "step": r["step_key"],
                "type": r["type"],
                "failed": r["failed"],
                "runs": r["n"],
                "failure_rate": round(r["failed"] / r["n"], 4),
            }
            for r in failing
        ],
        "overdue_queues": overdue_queues(limit=limit),
    }


def overdue_queues(*, limit: int = 10) -> list[dict[str, Any]]:
    """Queues with the most open tasks past their due time (or SLA due time)."""
    return _task_reports.overdue_queues(limit) if _task_reports is not None else []


def sla_compliance(*, hours: int = 24) -> list[dict[str, Any]]:
    """Per SLA config over the last ``hours``: how many tasks met their target."""
    return _task_reports.sla_compliance(hours) if _task_reports is not None else []


def queue_dashboard(*, hours: int = 24) -> dict[str, Any] | None:
    """Open tasks by queue and by assignee, completion times and overdue counts."""
    if _task_reports is None or _task_reports.queue_dashboard is None:
        return None
    return _task_reports.queue_dashboard(hours)


def outbox_lag_seconds() -> float:
    oldest = (
        Event.objects.filter(dispatched_at__isnull=True)
        .order_by("occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )
    return (timezone.now() - oldest).total_seconds() if oldest else 0.0


def outbox_failing() -> int:
    """Events whose dispatch failed and that wait, put off, for another attempt."""
    return Event.objects.filter(dispatched_at__isnull=True).exclude(dispatch_error="").count()
