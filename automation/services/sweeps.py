"""Sweeps (run by beat): events whose dispatch was lost, steps whose delay or backoff is
over, runs whose worker died. Claimed with ``SKIP LOCKED`` in batches; one broken item is
logged and skipped."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from automation.models import ActionRun, Event, Run, RunStatus, StepStatus
from automation.services.common import engine_setting
from automation.services.waits import step_wake

logger = logging.getLogger(__name__)


def outbox_redispatch(*, older_than: timedelta | None = None, limit: int | None = None) -> int:
    """Dispatch events whose dispatch was lost (broker down, worker killed)."""
    from automation.tasks import dispatch_event

    grace = older_than if older_than is not None else timedelta(
        seconds=engine_setting("OUTBOX_GRACE_SECONDS"))
    limit = limit or engine_setting("SWEEP_BATCH_SIZE")
    now = timezone.now()
    ids = list(
        Event.objects.filter(dispatched_at__isnull=True, occurred_at__lte=now - grace)
        .filter(Q(dispatch_after__isnull=True) | Q(dispatch_after__lte=now))
        .order_by("occurred_at").values_list("pk", flat=True)[:limit]
    )
    for event_id in ids:
        dispatch_event.delay(event_id)
    return len(ids)


def runs_wake_due(*, limit: int | None = None) -> int:
    """Wake steps whose delay or backoff is over and advance their runs."""
    from automation.tasks import advance_run

    limit = limit or engine_setting("SWEEP_BATCH_SIZE")
    with transaction.atomic():
        due = list(
            ActionRun.objects.select_for_update(skip_locked=True)
            .filter(wake_at__isnull=False, wake_at__lte=timezone.now(),
                    status__in=[StepStatus.PENDING, StepStatus.WAITING])
            .order_by("pk").values_list("pk", flat=True)[:limit]
        )
    run_ids = set()
    for action_run_id in due:
        try:
            run_id = step_wake(action_run_id=action_run_id)
        except DatabaseError:
            logger.exception("could not wake step %s; skipped", action_run_id)
            continue
        if run_id is not None:
            run_ids.add(run_id)
    for run_id in run_ids:
        advance_run.delay(run_id)
    return len(due)


def runs_resume_stale(*, older_than: timedelta | None = None, limit: int | None = None) -> int:
    """Pick up runs whose worker died: re-queue lost steps and advance the runs."""
    from automation.tasks import advance_run

    age = older_than if older_than is not None else timedelta(
        seconds=engine_setting("STALE_RUN_SECONDS"))
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
        Run.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING],
                           updated_at__lte=cutoff)
        .order_by("pk").values_list("pk", flat=True)[:limit]
    )
    for run_id in run_ids:
        advance_run.delay(run_id)
    return len(run_ids)
