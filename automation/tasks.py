"""Celery tasks: thin wrappers that take ids, and call one service.

Explicit, stable names; acks late (from settings), so a message whose worker dies is
delivered again; every service they call re-checks state under a lock, so a second delivery
does nothing. Database trouble is retried with backoff; domain failures are recorded on
the ActionRun by the services, never retried here.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import DatabaseError, InterfaceError

from automation import services

logger = logging.getLogger(__name__)

INFRA_ERRORS = (DatabaseError, InterfaceError)
RETRY = {
    "autoretry_for": INFRA_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}
# Publishing after a commit tries the broker twice, at once: a broker that is down costs the
# caller milliseconds, not Celery's default of four attempts over 0.6 s per message.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0,
    "interval_max": 0,
}


def publish(task: Task, *args: object, countdown: float | None = None) -> bool:
    """Publish a message for ``task`` (after the state it acts on has committed).

    The database is the source of truth and a message only a shortcut: when the broker
    cannot take it (down, refusing connections), the failure is logged and left to the
    sweeps, which find the work from the database; it is never raised to the caller, whose
    transaction has already committed. Returns whether the message was published.
    """
    try:
        task.apply_async(args, countdown=countdown, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception:  # the broker's errors (kombu OperationalError, redis, OSError)
        logger.warning(
            "could not publish %s%r; the sweeps will take it on", task.name, args, exc_info=True
        )
        return False
    return True


@shared_task(name="flowdesk.dispatch_event")
def dispatch_event(event_id: int) -> None:
    """Dispatch one event (the outbox sweep, replays). On database trouble the event is put
    off with backoff and the sweep tries again."""
    try:
        services.event_dispatch(event_id=event_id)
    except INFRA_ERRORS as exc:
        services.event_dispatch_put_off(event_id, exc)
        raise


@shared_task(name="flowdesk.dispatch_pending", **RETRY)
def dispatch_pending() -> int:
    """Drain the outbox (published by ``automation.events.outbox_ring``).

    The drain first waits, at most ``DISPATCH_COALESCE_SECONDS`` after the first event rang
    (100 ms by default), until a batch's worth of events has rung: events that
    commit meanwhile find the doorbell still rung and publish nothing, so they are claimed
    with the event that rang, as one batch (under steady traffic a drain would otherwise
    find one event, and pay a batch's fixed cost and a message for each). A backlog, or a
    full batch ringing for help, does not wait. After a batch that was not full, the drain
    keeps the doorbell rung and claims the next window's events itself, for up to
    ``HOLD_SECONDS`` (``services.outbox_drain``): steady traffic costs a drain message a
    second, not one a batch."""
    from automation.events import outbox_doorbell_wait
    from automation.services.dispatch import HOLD_SECONDS

    size = services.engine_setting("DISPATCH_BATCH_SIZE")
    window = services.engine_setting("DISPATCH_COALESCE_SECONDS")
    outbox_doorbell_wait(size, window)
    return services.outbox_drain(window=window, hold_seconds=HOLD_SECONDS)


@shared_task(name="flowdesk.advance_run", **RETRY)
def advance_run(run_id: int) -> None:
    services.run_advance(run_id=run_id)


@shared_task(name="flowdesk.execute_step", **RETRY)
def execute_step(action_run_id: int) -> None:
    from automation.models import ActionRun

    services.step_execute(action_run_id=action_run_id)
    row = ActionRun.objects.filter(pk=action_run_id).values_list("run_id", "step_key").first()
    if row is not None:  # start what this step made ready (and only that)
        services.run_advance(run_id=row[0], finished=row[1])


@shared_task(name="flowdesk.wake_step", **RETRY)
def wake_step(action_run_id: int) -> None:
    run_id = services.step_wake(action_run_id=action_run_id)
    if run_id is not None:
        services.run_advance(run_id=run_id)


@shared_task(name="flowdesk.emit_scheduled", **RETRY)
def emit_scheduled(event_type: str, payload: dict | None = None) -> None:
    """Raise an event from a django-celery-beat schedule (cron or interval)."""
    from automation.events import event_emit
    from automation.models import EventSource

    event_emit(event_type, payload or {}, source=EventSource.SCHEDULE)


@shared_task(name="flowdesk.sweep.outbox")
def sweep_outbox() -> int:
    redispatched = services.outbox_redispatch()
    if redispatched:
        logger.info("outbox sweep: %d events dispatched again", redispatched)
    return redispatched


@shared_task(name="flowdesk.sweep.wake_due")
def sweep_wake_due() -> int:
    woken = services.runs_wake_due()
    if woken:
        logger.info("wake sweep: %d due steps woken", woken)
    return woken


@shared_task(name="flowdesk.sweep.stale_runs")
def sweep_stale_runs() -> int:
    resumed = services.runs_resume_stale()
    if resumed:
        logger.info("stale-run sweep: %d runs resumed", resumed)
    return resumed
