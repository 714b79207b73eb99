"""The SLA sweep: fire the warnings, breaches and escalation levels that are due.

One sweep (``sla_sweep``, run by the ``flowdesk.sweep.sla`` beat task every minute):

1. **Claim** a batch of due tasks, in the transaction that checks them: the open tasks
   whose ``sla_next_check_at`` has passed, in the order of the due set's index
   (``SLACheck``, ``next_check_at, task``: the most overdue first, ties by primary key),
   ``FOR UPDATE SKIP LOCKED`` so concurrent sweeps take different rows: the
   row locks keep the others off the batch until it commits, and a sweep that dies leaves
   its tasks due again at once (its transaction rolls back). Reading the index in its own
   order, a batch costs the same whatever the number of open tasks: ordering by primary key
   instead lets the planner walk the primary key and filter, through every open task, once
   many are due. ``SKIP LOCKED`` never waits, so the claim cannot deadlock whatever its lock
   order; a task is then locked alone.
2. **Check** the claimed batch with a fixed number of set-based
   statements (``tasks_inbox.sla.fire.fire_batch``): lock the rows, read what they need,
   decide every due threshold in Python in the order they fire, then write the records
   (``INSERT ... ON CONFLICT DO NOTHING RETURNING``: a threshold fires once per task
   whatever the number of sweeps), the tasks (one ``UPDATE``), and the history rows,
   events (``task.sla_warning``, ``task.sla_breached``, ``task.escalated``) and
   notifications (one ``INSERT`` each); ``sla_next_check_at`` becomes the next pending
   threshold. A task whose check fails is logged, left out and leased (its next check
   moved ``LEASE`` ahead: a later sweep tries again once it ends); the others go on.
   Should the batch's statements fail, the batch rolls back whole, its tasks are leased
   and checked one by one (``sla_task_check``), so one bad row costs only itself.
3. A full batch means more may be due: the Celery task enqueues the next sweep as soon as
   it has claimed one (``on_full``), before checking it, so free worker processes sweep a
   backlog side by side. Each sweep enqueues at most one successor, so the sweeps in flight
   stay as many as the chains the beat started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from tasks_inbox.models import Task
from tasks_inbox.sla.fire import fire_batch, id_array, server_binding

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
DEFAULT_BATCH = 500


@dataclass
class SweepResult:
    claimed: int = 0
    fired: int = 0
    failed: int = 0
    skipped: int = 0  # escalation actions whose target queue or user no longer exists
    batch_size: int = DEFAULT_BATCH

    @property
    def full(self) -> bool:
        """The batch was full: more tasks may be due (the task re-enqueues itself)."""
        return self.claimed >= self.batch_size


def batch_size_setting() -> int:
    return int(settings.FLOWDESK.get("SWEEP_BATCH_SIZE", DEFAULT_BATCH))


def due_tasks(now: datetime) -> Any:
    """The due set: open tasks with a threshold due by ``now``, on the task's own columns
    (which ``SLACheck`` mirrors and indexes)."""
    return Task.objects.filter(
        is_open=True, sla_next_check_at__isnull=False, sla_next_check_at__lte=now
    )


def claim_query(now: datetime, limit: int) -> Any:
    """The claim's SELECT: up to ``limit`` due tasks (whole rows: the batch reads them no
    more), the most overdue first, the tasks locked by others skipped (to run inside a
    transaction). On PostgreSQL the due set is read from ``SLACheck`` in its index's order
    and only the task rows are locked: every writer of a check row holds its task's row lock
    (the triggers move the check row within the task's update), so the claim takes the same
    lock as every other writer of the task."""
    if connection.vendor != "postgresql":
        return (
            due_tasks(now)
            .select_for_update(skip_locked=True)
            .order_by("sla_next_check_at", "pk")[:limit]
        )
    return (
        Task.objects.filter(is_open=True, sla_check__next_check_at__lte=now)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("sla_check__next_check_at", "pk")[:limit]
    )


def sla_lease(ids: list[int], now: datetime) -> None:
    """Move the next check of these tasks, those still due, ``LEASE`` ahead (a task another
    sweep has checked meanwhile keeps its new next check)."""
    due_tasks(now).filter(pk__in=id_array(ids)).update(sla_next_check_at=now + LEASE)


def sla_sweep(
    *, batch_size: int | None = None, on_full: Callable[[], object] | None = None
) -> SweepResult:
    """Claim one batch of due tasks and check it with set-based statements, in one
    transaction: the claim's row locks keep the other sweeps off the batch while it is
    checked, so the claim writes no lease (each task's row is written once); a task whose
    check fails gets the lease instead, and is retried once it runs out.

    ``on_full`` is called as soon as a full batch is claimed, before it is checked: the
    sweep task enqueues the next sweep there, so that another worker process claims the
    next batch (skipping this one's locked rows) while this one is checked, and a backlog
    of due tasks is swept by every free worker process side by side."""
    result = SweepResult(batch_size=batch_size or batch_size_setting())
    now = timezone.now()
    ids: list[int] = []
    try:
        with transaction.atomic():
            with server_binding():
                claimed = list(claim_query(now, result.batch_size))
            ids = [task.pk for task in claimed]
            result.claimed = len(ids)
            if not ids:
                return result
            if on_full is not None and result.full:
                _next_sweep(on_full)
            outcome = fire_batch(ids, claimed=claimed)
            if outcome.failed:
                sla_lease(outcome.failed, now)
    except Exception:  # the batch rolled back whole: check its tasks one by one
        if not ids:
            raise
        logger.exception("SLA batch of %s tasks failed; checking them one by one", len(ids))
        sla_lease(ids, now)  # out of the other sweeps' way; a task that fails again waits
        for task_id in ids:
            try:
                result.fired += sla_task_check(task_id=task_id)
            except Exception:  # one broken task must not stop the sweep
                result.failed += 1
                logger.exception(
                    "SLA check of task %s failed; skipped until its lease ends", task_id
                )
        return result
    result.fired += outcome.fired
    result.failed += len(outcome.failed)
    result.skipped += outcome.skipped
    return result


def _next_sweep(on_full: Callable[[], object]) -> None:
    """Start the next sweep; should that fail (the broker down), the batch goes on and the
    next beat sweeps what is left."""
    try:
        on_full()
    except Exception:
        logger.exception("the next SLA sweep could not be enqueued; the beat will start it")


def sla_task_check(*, task_id: int) -> int:
    """Fire what is due on one task (under its row lock); returns how many thresholds fired
    here. Safe to call any number of times, from any number of processes; a failure
    raises."""
    with transaction.atomic():
        return fire_batch([task_id], strict=True).fired
