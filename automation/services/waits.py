"""Ending waits: a due delay or backoff (``step_wake``), and a step that waited on something
outside the run, such as a human task (``step_resume``, what the
``automation.signals.waiting_step_ended`` signal runs)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from automation.models import ActionRun, StepStatus
from automation.services.common import enqueue_advance
from automation.services.execution import step_finish


def step_wake(*, action_run_id: int, advance_after_commit: bool = False) -> int | None:
    """Complete a due delay (or release a backed-off step); returns the run to advance.

    With ``advance_after_commit``, the run's ``advance_run`` message is published as this
    wake commits (what the wake sweep does for each step it wakes). If that message is
    lost, or the caller dies before advancing, the run is left waiting with nothing to
    wait on: the stale-run sweep finds it there (``runs_resume_stale``).
    """
    from automation.tasks import advance_run, publish

    with transaction.atomic():
        action_run = (
            ActionRun.objects.select_for_update(skip_locked=True).filter(pk=action_run_id).first()
        )
        if action_run is None:
            return None
        now = timezone.now()
        if action_run.wake_at is None or action_run.wake_at > now:
            return None
        if action_run.status == StepStatus.WAITING and not action_run.waiting_on:
            output = {**(action_run.output or {}), "waited_until": action_run.wake_at.isoformat()}
            step_finish(action_run, StepStatus.COMPLETED, now, output=output)
        elif action_run.status != StepStatus.PENDING:
            return None
        run_id = action_run.run_id
        if advance_after_commit:
            transaction.on_commit(lambda: publish(advance_run, run_id))
        return run_id


def step_resume(
    *, action_run_id: int, output: dict[str, Any], failed: bool = False, error: str = ""
) -> None:
    """Finish a step that waited on something outside the run (a human task).

    Call inside the transaction that ended the wait; the run advances after commit.
    """
    action_run = ActionRun.objects.select_for_update().filter(pk=action_run_id).first()
    if action_run is None or action_run.status != StepStatus.WAITING:
        return
    now = timezone.now()
    if failed:
        action_run.error = error
        action_run.error_code = "TASK_CANCELLED"
        step_finish(action_run, StepStatus.FAILED, now, output=output)
    else:
        step_finish(action_run, StepStatus.COMPLETED, now, output=output)
    enqueue_advance(action_run.run_id)


def on_waiting_step_ended(
    sender: object,
    *,
    action_run_id: int,
    output: dict[str, Any],
    failed: bool = False,
    error: str = "",
    **kwargs: object,
) -> None:
    """Receiver of ``automation.signals.waiting_step_ended`` (connected in ``ready()``)."""
    step_resume(action_run_id=action_run_id, output=output, failed=failed, error=error)
