"""The SLA sweep: fire the warnings, breaches and escalation levels that are due.

One sweep (``sla_sweep``, run by the ``flowdesk.sweep.sla`` beat task every minute):

1. **Claim** a batch of due tasks in one short transaction: the open tasks whose
   ``sla_next_check_at`` has passed, in the order of the partial index
   ``task_sla_next_check`` (``sla_next_check_at, id``: the most overdue first, ties by
   primary key), ``FOR UPDATE SKIP LOCKED`` so concurrent sweeps take different rows; the
   claimed rows' ``sla_next_check_at`` is moved ``LEASE`` ahead, so that no other sweep
   picks them while this one works, and a sweep that dies leaves them due again after the
   lease. Reading the index in its own order, a batch costs the same whatever the number
   of open tasks: ordering by primary key instead lets the planner walk the primary key and
   filter, through every open task, once many are due. ``SKIP LOCKED`` never waits, so the
   claim cannot deadlock whatever its lock order; a task is then locked alone.
2. **Check** each claimed task in its own transaction (``sla_task_check``): lock the row,
   read the clock, and fire every threshold that is due, in order. Each threshold is first
   recorded in ``SLAEventRecord`` with ``INSERT ... ON CONFLICT DO NOTHING RETURNING``:
   only the insert that wins emits the event (``task.sla_warning``, ``task.sla_breached``,
   ``task.escalated``) and sends the notifications, so a threshold fires once per task
   whatever the number of sweeps. Then ``sla_next_check_at`` is set to the next pending
   threshold. A task whose check fails is logged and skipped (its lease expires and a later
   sweep tries again); the others go on.
3. A full batch means more may be due: the Celery task enqueues itself again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from automation.events import actor_context
from automation.registry import json_value
from tasks_inbox.models import SLAEventKind, SLAEventRecord, Task, priority_name
from tasks_inbox.sla.clock import clock_elapsed, clock_schedule, pending_thresholds
from tasks_inbox.sla.rules import SLASpec, Threshold, sla_spec

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
DEFAULT_BATCH = 500


@dataclass
class SweepResult:
    claimed: int = 0
    fired: int = 0
    failed: int = 0
    batch_size: int = DEFAULT_BATCH

    @property
    def full(self) -> bool:
        """The batch was full: more tasks may be due (the task re-enqueues itself)."""
        return self.claimed >= self.batch_size


def batch_size_setting() -> int:
    return int(settings.FLOWDESK.get("SWEEP_BATCH_SIZE", DEFAULT_BATCH))


def due_tasks(now: datetime) -> Any:
    """The due set: open tasks with a threshold due by ``now`` (served by the partial index
    ``task_sla_next_check``, whose condition these filters imply)."""
    return Task.objects.filter(
        is_open=True, sla_next_check_at__isnull=False, sla_next_check_at__lte=now
    )


def claim_query(now: datetime, limit: int) -> Any:
    """The claim's SELECT: up to ``limit`` due task ids in the partial index's order, rows
    locked by others skipped (to run inside a transaction)."""
    return (
        due_tasks(now)
        .select_for_update(skip_locked=True)
        .order_by("sla_next_check_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def sla_claim(*, limit: int, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due tasks (most overdue first, skipping rows locked by others)
    and move their next check ``LEASE`` ahead; returns their ids."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(claim_query(now, limit))
        if ids:
            Task.objects.filter(pk__in=ids).update(sla_next_check_at=now + LEASE)
    return ids


def sla_sweep(*, batch_size: int | None = None) -> SweepResult:
    """Claim one batch of due tasks and check each in its own transaction."""
    result = SweepResult(batch_size=batch_size or batch_size_setting())
    ids = sla_claim(limit=result.batch_size)
    result.claimed = len(ids)
    managers: dict[int, list[dict[str, Any]]] = {}  # per queue, for this batch
    for task_id in ids:
        try:
            result.fired += sla_task_check(task_id=task_id, managers=managers)
        except Exception:  # one broken task must not stop the sweep
            result.failed += 1
            logger.exception("SLA check of task %s failed; skipped until its lease ends", task_id)
    return result


# --- one task ---------------------------------------------------------------------------


def sla_task_check(
    *,
    task_id: int,
    now: datetime | None = None,
    managers: dict[int, list[dict[str, Any]]] | None = None,
) -> int:
    """Fire what is due on one task (under its row lock); returns how many thresholds fired
    here. Safe to call any number of times, from any number of processes. ``managers``
    caches the queues' managers across the tasks of one batch."""
    with transaction.atomic():
        if not list(
            Task.objects.select_for_update().filter(pk=task_id).values_list("pk", flat=True)
        ):
            return 0
        now = now or timezone.now()
        task = Task.objects.select_related("lifecycle", "assignee", "queue", "sla_config").get(
            pk=task_id
        )
        spec = sla_spec(task.sla_config) if task.sla_config is not None else None
        fired = 0
        if task.is_open and (spec is None or spec.is_active):
            for threshold, due_at in pending_thresholds(task, spec):
                if due_at is None or due_at > now:
                    break
                if _fire(task, spec, threshold, due_at, now, {} if managers is None else managers):
                    fired += 1
        fields = clock_schedule(task, spec)
        task.save(
            update_fields=[*fields, "sla_warned_at", "sla_breached_at", "sla_escalation_level"]
        )
        return fired


def _record(
    task: Task, threshold: Threshold, due_at: datetime, now: datetime, details: dict[str, Any]
) -> bool:
    """Insert the threshold's record unless it exists; True when this insert won."""
    meta = SLAEventRecord._meta
    quote = connection.ops.quote_name
    columns = ["task_id", "kind", "level", "config_id", "due_at", "fired_at", "details"]
    details_value = meta.get_field("details").get_db_prep_save(details, connection)
    # Identifiers come from the model's meta, values go as parameters.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({quote('task_id')}, {quote('kind')}, {quote('level')}) DO NOTHING "
        f"RETURNING {quote('id')}"
    )
    params = [
        task.pk,
        threshold.kind,
        threshold.level,
        task.sla_config_id,
        meta.get_field("due_at").get_db_prep_save(due_at, connection),
        meta.get_field("fired_at").get_db_prep_save(now, connection),
        details_value,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _mark(task: Task, threshold: Threshold, now: datetime) -> None:
    if threshold.kind == SLAEventKind.WARNING:
        task.sla_warned_at = task.sla_warned_at or now
    elif threshold.kind == SLAEventKind.BREACH:
        task.sla_breached_at = task.sla_breached_at or now
    else:
        task.sla_escalation_level = max(task.sla_escalation_level, threshold.level)


def queue_managers(
    queue_id: int | None, cache: dict[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    if not queue_id:
        return []
    if queue_id not in cache:
        cache[queue_id] = [
            context
            for user in get_user_model()
            .objects.filter(managed_queues__group=queue_id)
            .order_by("pk")
            if (context := actor_context(user)) is not None
        ]
    return cache[queue_id]


def sla_context(
    task: Task,
    spec: SLASpec | None,
    threshold: Threshold,
    due_at: datetime,
    now: datetime,
    managers: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``sla`` part of the events' context (with the managers of the task's queue, so
    that a workflow can tell them: ``{{sla.manager.username}}``)."""
    return json_value(
        {
            "config_id": task.sla_config_id,
            "config": spec.name if spec else None,
            "kind": threshold.kind,
            "level": threshold.level,
            "reached_at": due_at,
            "target_seconds": spec.target_seconds if spec else None,
            "threshold_seconds": threshold.seconds if spec else None,
            "elapsed_seconds": int(clock_elapsed(task, spec, now)),
            "started_at": task.sla_started_at,
            "warning_at": task.sla_warning_at,
            "due_at": task.sla_due_at,
            "priority": priority_name(task.priority),
            "managers": managers,
            "manager": managers[0] if managers else None,
        }
    )


def _fire(
    task: Task,
    spec: SLASpec | None,
    threshold: Threshold,
    due_at: datetime,
    now: datetime,
    managers: dict[int, list[dict[str, Any]]],
) -> bool:
    from tasks_inbox.services import task_sla_fire

    context = sla_context(
        task, spec, threshold, due_at, now, queue_managers(task.queue_id, managers)
    )
    won = _record(task, threshold, due_at, now, context)
    _mark(task, threshold, now)
    if not won:
        return False
    task_sla_fire(
        task=task,
        kind=threshold.kind,
        level=threshold.level,
        actions=list(threshold.actions),
        sla=context,
    )
    return True
