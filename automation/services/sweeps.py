"""Sweeps (run by beat): events whose dispatch was lost, steps whose delay or backoff is
over, runs whose worker died. Claimed with ``SKIP LOCKED`` in batches; one broken item is
logged and skipped."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from automation.models import RUN_IN_FLIGHT_STATUSES, ActionRun, Event, Run, RunStatus, StepStatus
from automation.services.common import engine_setting
from automation.services.waits import step_wake

logger = logging.getLogger(__name__)


def outbox_redispatch(*, older_than: timedelta | None = None, limit: int | None = None) -> int:
    """Dispatch events whose dispatch was lost (broker down, worker killed)."""
    from automation.tasks import dispatch_event, publish

    grace = (
        older_than
        if older_than is not None
        else timedelta(seconds=engine_setting("OUTBOX_GRACE_SECONDS"))
    )
    limit = limit or engine_setting("SWEEP_BATCH_SIZE")
    now = timezone.now()
    ids = list(
        Event.objects.filter(dispatched_at__isnull=True, occurred_at__lte=now - grace)
        .filter(Q(dispatch_after__isnull=True) | Q(dispatch_after__lte=now))
        .order_by("occurred_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Out of the next sweeps' sight for the grace period: with a backlog, each sweep would
    # otherwise publish the same events again, faster than the workers take them.
    Event.objects.filter(pk__in=ids, dispatched_at__isnull=True).update(dispatch_after=now + grace)
    for event_id in ids:
        publish(dispatch_event, event_id)
    return len(ids)


def runs_wake_due(*, limit: int | None = None) -> int:
    """Wake steps whose delay or backoff is over; each wake publishes its run's advance
    as it commits."""
    limit = limit or engine_setting("SWEEP_BATCH_SIZE")
    with transaction.atomic():
        due = list(
            ActionRun.objects.select_for_update(skip_locked=True)
            .filter(
                wake_at__isnull=False,
                wake_at__lte=timezone.now(),
                status__in=[StepStatus.PENDING, StepStatus.WAITING],
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
    for action_run_id in due:
        try:
            step_wake(action_run_id=action_run_id, advance_after_commit=True)
        except DatabaseError:
            logger.exception("could not wake step %s; skipped", action_run_id)
    return len(due)


def runs_stranded(*, older_than: timedelta, limit: int) -> list[int]:
    """Runs ``waiting`` on nothing: no step waits for a due time or on something outside
    the run (a task) and none is backed off, and none changed within ``older_than``.

    That is the state a run is left in when the worker that ended its wait (a delay woken,
    a task completed) died, or its broker was down, between committing the wake and
    advancing the run.
    """
    waits = ActionRun.objects.filter(run=OuterRef("pk")).filter(
        Q(status=StepStatus.WAITING)
        | Q(status=StepStatus.PENDING, wake_at__isnull=False)
        | Q(updated_at__gt=timezone.now() - older_than)
    )
    return list(
        Run.objects.filter(status=RunStatus.WAITING, updated_at__lte=timezone.now() - older_than)
        .filter(~Exists(waits))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def runs_resume_stale(*, older_than: timedelta | None = None, limit: int | None = None) -> int:
    """Pick up runs whose worker died: re-queue lost steps and advance the runs, and the
    runs left waiting on nothing (:func:`runs_stranded`, after the outbox grace)."""
    from automation.tasks import advance_run, publish

    age = (
        older_than
        if older_than is not None
        else timedelta(seconds=engine_setting("STALE_RUN_SECONDS"))
    )
    limit = limit or engine_setting("SWEEP_BATCH_SIZE")
    cutoff = timezone.now() - age
    with transaction.atomic():
        lost_steps = list(
            ActionRun.objects.select_for_update(skip_locked=True)
            .filter(status=StepStatus.RUNNING, updated_at__lte=cutoff)
            .order_by("pk")[:limit]
        )
        for action_run in lost_steps:
            action_run.status = StepStatus.PENDING
            action_run.error = "The worker executing this step was lost; retrying."
            action_run.updated_at = timezone.now()
            action_run.save(update_fields=["status", "error", "updated_at"])
    run_ids = {ar.run_id for ar in lost_steps}
    run_ids.update(
        Run.objects.filter(status__in=RUN_IN_FLIGHT_STATUSES, updated_at__lte=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    grace = min(age, timedelta(seconds=engine_setting("OUTBOX_GRACE_SECONDS")))
    run_ids.update(runs_stranded(older_than=grace, limit=limit))
    # Resumed: not stale again before ``age`` has passed (each sweep would otherwise publish
    # the same runs again while the workers are behind).
    Run.objects.filter(pk__in=run_ids).update(updated_at=timezone.now())
    for run_id in sorted(run_ids):
        publish(advance_run, run_id)
    return len(run_ids)
