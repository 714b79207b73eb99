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
2. **Check** the claimed tasks together (``sla_batch_check``), in one transaction of
   set-based statements: lock and read the rows, and fire every threshold that is due, in
   order. The thresholds are first recorded in ``SLAEventRecord`` with one ``INSERT ... ON
   CONFLICT DO NOTHING RETURNING``: only the inserts that win emit their events
   (``task.sla_warning``, ``task.sla_breached``; one INSERT for the batch) and send their
   notifications (one INSERT), so a threshold fires once per task whatever the number of
   sweeps. Then ``sla_next_check_at`` is set to the next pending threshold (one UPDATE). A
   task with an escalation level due is checked on its own (``sla_task_check``, the same
   steps a task at a time), in the same transaction, as its actions move the task. If the
   batch fails, each task is checked in its own transaction: a task whose check fails is
   logged and skipped (its lease expires and a later sweep tries again); the others go on.
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
    """Claim one batch of due tasks and check them together (``sla_batch_check``); if
    that fails, each in its own transaction, so one broken task costs only itself."""
    result = SweepResult(batch_size=batch_size or batch_size_setting())
    ids = sla_claim(limit=result.batch_size)
    result.claimed = len(ids)
    managers: dict[int, list[dict[str, Any]]] = {}  # per queue, for this batch
    if not ids:
        return result
    try:
        result.fired += sla_batch_check(task_ids=ids, managers=managers)
        return result
    except Exception:
        logger.warning(
            "SLA check of %s tasks together failed; one by one now", len(ids), exc_info=True
        )
    for task_id in ids:
        try:
            result.fired += sla_task_check(task_id=task_id, managers=managers)
        except Exception:  # one broken task must not stop the sweep
            result.failed += 1
            logger.exception("SLA check of task %s failed; skipped until its lease ends", task_id)
    return result


# --- a batch of tasks -------------------------------------------------------------------

SCHEDULE_FIELDS = [
    "sla_warning_at",
    "sla_due_at",
    "sla_next_check_at",
    "sla_warned_at",
    "sla_breached_at",
    "sla_escalation_level",
]


def sla_batch_check(
    *,
    task_ids: list[int],
    now: datetime | None = None,
    managers: dict[int, list[dict[str, Any]]] | None = None,
) -> int:
    """Fire what is due on these tasks in one transaction, with set-based statements:
    the rows locked and read in one query, the thresholds' records inserted in one
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (only the inserts that win fire, as in
    ``sla_task_check``), their events in one INSERT, their notifications in one, the next
    checks in one UPDATE. A task with an escalation level due goes through
    ``sla_task_check`` (its actions move the task), in the same transaction. Returns how
    many thresholds fired."""
    from automation.events import event_build, events_emit
    from automation.models import EventSource
    from tasks_inbox.live import notification_created, task_changed
    from tasks_inbox.models import Notification
    from tasks_inbox.selectors import task_context
    from tasks_inbox.services import sla_notice

    managers = {} if managers is None else managers
    with transaction.atomic():
        tasks = list(
            Task.objects.select_for_update(of=("self",))
            .select_related(
                "lifecycle", "assignee", "queue", "sla_config", "created_by", "completed_by"
            )
            .filter(pk__in=task_ids)
            .order_by("pk")
        )
        now = now or timezone.now()
        specs: dict[int, SLASpec] = {}
        planned: list[tuple[Task, SLASpec | None]] = []
        one_by_one: list[int] = []
        due: list[tuple[Task, SLASpec | None, Threshold, datetime, dict[str, Any]]] = []
        for task in tasks:
            spec = None
            if task.sla_config_id:
                if task.sla_config_id not in specs:
                    specs[task.sla_config_id] = sla_spec(task.sla_config)
                spec = specs[task.sla_config_id]
            reached = []
            if task.is_open and (spec is None or spec.is_active):
                for threshold, due_at in pending_thresholds(task, spec):
                    if due_at is None or due_at > now:
                        break
                    reached.append((threshold, due_at))
            if any(t.kind == SLAEventKind.ESCALATION for t, _ in reached):
                one_by_one.append(task.pk)
                continue
            planned.append((task, spec))
            for threshold, due_at in reached:
                context = sla_context(
                    task, spec, threshold, due_at, now, queue_managers(task.queue_id, managers)
                )
                due.append((task, spec, threshold, due_at, context))
        won = _record_many(due, now)
        events = []
        notices: list[Notification] = []
        recipients: dict[int, list[Any]] = {}
        for task, _spec, threshold, _due_at, context in due:
            _mark(task, threshold, now)
            if (task.pk, threshold.kind, threshold.level) not in won:
                continue
            event_type = _event_type(threshold.kind)
            events.append(
                event_build(
                    event_type,
                    context={**task_context(task), **json_value({"sla": context})},
                    source=EventSource.TASK,
                    entity_type="task",
                    entity_id=task.pk,
                )
            )
            text = sla_notice(task, threshold.kind, context)[:1000]
            for user in _assignee_or_managers(task, recipients):
                notices.append(
                    Notification(recipient=user, message=text, link=task.get_absolute_url())
                )
        events_emit(events)
        Notification.objects.bulk_create(notices)
        for task, _spec, threshold, _due_at, _context in due:
            if (task.pk, threshold.kind, threshold.level) in won:
                task_changed(task, _event_type(threshold.kind))
        for notification in notices:
            notification_created(notification)
        for task, spec in planned:
            clock_schedule(task, spec)
        if planned:
            Task.objects.bulk_update([task for task, _ in planned], SCHEDULE_FIELDS)
        fired = len(won)
        for task_id in one_by_one:
            fired += sla_task_check(task_id=task_id, now=now, managers=managers)
        return fired


def _event_type(kind: str) -> str:
    return "task.sla_warning" if kind == SLAEventKind.WARNING else "task.sla_breached"


def _assignee_or_managers(task: Task, cache: dict[int, list[Any]]) -> list[Any]:
    """Who hears of a warning or breach: the assignee, or else the queue's managers."""
    if task.assignee_id:
        return [task.assignee]
    if not task.queue_id:
        return []
    if task.queue_id not in cache:
        cache[task.queue_id] = list(
            get_user_model().objects.filter(managed_queues__group=task.queue_id).order_by("pk")
        )
    return cache[task.queue_id]


def _record_many(
    due: list[tuple[Task, SLASpec | None, Threshold, datetime, dict[str, Any]]], now: datetime
) -> set[tuple[int, str, int]]:
    """Insert the thresholds' records that do not exist yet, in one statement; returns the
    (task id, kind, level) of those this insert won."""
    if not due:
        return set()
    meta = SLAEventRecord._meta
    quote = connection.ops.quote_name
    columns = ["task_id", "kind", "level", "config_id", "due_at", "fired_at", "details"]
    details_field = meta.get_field("details")
    due_field, fired_field = meta.get_field("due_at"), meta.get_field("fired_at")
    fired_at = fired_field.get_db_prep_save(now, connection)
    params: list[Any] = []
    for task, _spec, threshold, due_at, context in due:
        params += [
            task.pk,
            threshold.kind,
            threshold.level,
            task.sla_config_id,
            due_field.get_db_prep_save(due_at, connection),
            fired_at,
            details_field.get_db_prep_save(context, connection),
        ]
    row = f"({', '.join(['%s'] * len(columns))})"
    # Identifiers come from the model's meta, values go as parameters.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(due))} "
        f"ON CONFLICT ({quote('task_id')}, {quote('kind')}, {quote('level')}) DO NOTHING "
        f"RETURNING {quote('task_id')}, {quote('kind')}, {quote('level')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(int(task_id), kind, int(level)) for task_id, kind, level in cursor.fetchall()}


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
        spec = sla_spec(task.sla_config) if task.sla_config_id else None
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
            actor_context(user)
            for user in get_user_model()
            .objects.filter(managed_queues__group=queue_id)
            .order_by("pk")
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
