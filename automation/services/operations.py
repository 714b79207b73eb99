"""Operations on runs: suspend, resume, cancel, retry, rerun, and running a workflow by
hand. Each locks the run and checks its status first (``RunStateError`` otherwise), and
records who did it (``RunOperation``: the actor, the status before and after) in the same
transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from automation.errors import RunStateError
from automation.events import event_context, event_emit
from automation.models import (
    Event,
    EventSource,
    Run,
    RunOperation,
    RunOperationKind,
    RunStatus,
    StepStatus,
)
from automation.services.common import ACTIVE_RUN, enqueue_advance
from automation.services.creation import run_create
from automation.signals import run_cancelled, run_cancelling
from automation.statuses import RUN_OPEN_STATUSES


def _record(
    run: Run, kind: RunOperationKind, actor: Any, from_status: str, new_run: Run | None = None
) -> None:
    """The operation in the run's history, in the operation's transaction."""
    RunOperation.objects.create(
        run=run,
        kind=kind,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        from_status=from_status,
        to_status=run.status,
        new_run=new_run,
    )


def _locked_run(run_id: int) -> Run:
    run = Run.objects.select_for_update(of=("self",)).filter(pk=run_id).first()
    if run is None:
        raise RunStateError("Run not found.", code="NOT_FOUND")
    return run


@transaction.atomic
def run_suspend(*, run_id: int, actor: Any = None) -> Run:
    run = _locked_run(run_id)
    if run.status not in ACTIVE_RUN:
        raise RunStateError(f"A {run.status} run cannot be suspended.", data={"status": run.status})
    from_status = run.status
    run.status = RunStatus.SUSPENDED
    run.updated_at = timezone.now()
    run.save(update_fields=["status", "updated_at"])
    _record(run, RunOperationKind.SUSPEND, actor, from_status)
    return run


@transaction.atomic
def run_resume(*, run_id: int, actor: Any = None) -> Run:
    run = _locked_run(run_id)
    if run.status != RunStatus.SUSPENDED:
        raise RunStateError(
            f"Only a suspended run can be resumed; this one is {run.status}.",
            data={"status": run.status},
        )
    run.status = RunStatus.RUNNING
    run.updated_at = timezone.now()
    run.save(update_fields=["status", "updated_at"])
    _record(run, RunOperationKind.RESUME, actor, RunStatus.SUSPENDED)
    enqueue_advance(run.pk)
    return run


@transaction.atomic
def run_cancel(*, run_id: int, actor: Any = None) -> Run:
    run = _locked_run(run_id)
    if run.status not in RUN_OPEN_STATUSES:
        raise RunStateError(f"A {run.status} run cannot be cancelled.", data={"status": run.status})
    now = timezone.now()
    waiting = list(
        run.action_runs.filter(status=StepStatus.WAITING)
        .exclude(waiting_on="")
        .values_list("pk", flat=True)
    )
    if waiting:  # lock what they wait on before the steps (see run_cancelling)
        run_cancelling.send(sender=Run, run_id=run.pk, waiting_action_run_ids=waiting)
    run.action_runs.filter(
        status__in=[StepStatus.PENDING, StepStatus.WAITING, StepStatus.RUNNING],
    ).update(
        status=StepStatus.CANCELLED,
        finished_at=now,
        updated_at=now,
        wake_at=None,
        error="The run was cancelled.",
        error_code="CANCELLED",
    )
    from_status = run.status
    run.status = RunStatus.CANCELLED
    run.finished_at = now
    run.updated_at = now
    run.save(update_fields=["status", "finished_at", "updated_at"])
    _record(run, RunOperationKind.CANCEL, actor, from_status)
    if waiting:  # what they waited on ends too (the open tasks are cancelled)
        run_cancelled.send(sender=Run, run_id=run.pk, waiting_action_run_ids=waiting)
    return run


@transaction.atomic
def run_retry(*, run_id: int, actor: Any = None) -> Run:
    """Retry a failed run from its failed step(s); completed steps are not repeated."""
    run = _locked_run(run_id)
    if run.status != RunStatus.FAILED:
        raise RunStateError(
            f"Only a failed run can be retried; this one is {run.status}.",
            data={"status": run.status},
        )
    if run.error_code == "DEPTH_LIMIT":
        raise RunStateError(
            "A run stopped by the causation depth limit cannot be retried.",
            data={"status": run.status},
        )
    now = timezone.now()
    run.action_runs.filter(
        Q(status=StepStatus.FAILED) | Q(status=StepStatus.CANCELLED, error_code="UPSTREAM_FAILED"),
    ).update(
        status=StepStatus.PENDING,
        error="",
        error_code="",
        finished_at=None,
        wake_at=None,
        attempts=0,
        updated_at=now,
    )
    run.status = RunStatus.RUNNING
    run.error = ""
    run.error_code = ""
    run.finished_at = None
    run.updated_at = now
    run.save(update_fields=["status", "error", "error_code", "finished_at", "updated_at"])
    _record(run, RunOperationKind.RETRY, actor, RunStatus.FAILED)
    enqueue_advance(run.pk)
    return run


@transaction.atomic
def run_rerun(*, run_id: int, actor: Any = None) -> Run:
    """Start the run's event again on the workflow's current version, as a new run."""
    original = Run.objects.select_related("workflow", "event").get(pk=run_id)
    version_id = original.workflow.published_version_id
    if version_id is None:
        raise RunStateError("The workflow has no published version.")
    run = run_create(
        event=original.event,
        context=original.context,
        workflow_id=original.workflow_id,
        version_id=version_id,
        trigger_index=original.trigger_index,
        rerun_of=original,
    )
    _record(original, RunOperationKind.RERUN, actor, original.status, new_run=run)
    enqueue_advance(run.pk)
    return run


def workflow_execute(*, workflow_id: int, payload: dict[str, Any], actor: Any = None) -> Run:
    """Run a workflow by hand with ``payload`` as its context (no trigger matching)."""
    from workflows.models import Workflow

    with transaction.atomic():
        workflow = Workflow.objects.get(pk=workflow_id)
        if workflow.published_version_id is None:
            raise RunStateError("The workflow has no published version to run.")
        event = event_emit(
            f"workflow.{workflow.slug}.executed",
            payload,
            actor=actor,
            source=EventSource.MANUAL,
            dispatch=False,
        )
        run = run_create(
            event=event,
            context=event_context(event),
            workflow_id=workflow.pk,
            version_id=workflow.published_version_id,
            trigger_index=None,
        )
        Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now())
        enqueue_advance(run.pk)
    return run
