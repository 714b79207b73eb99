"""Celery tasks of the inbox: the SLA sweep (beat, every minute, on the ``sweeps`` queue)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

logger = logging.getLogger(__name__)


@shared_task(name="flowdesk.sweep.sla")
def sweep_sla(batch_size: int | None = None) -> int:
    """Fire the SLA thresholds that are due (one batch); when the batch is full, another
    sweep is enqueued at once (as soon as the batch is claimed: a free worker process takes
    the next batch meanwhile) instead of waiting for the next beat."""
    from tasks_inbox.sla.sweep import sla_sweep

    def next_sweep() -> None:
        if sweep_sla.app.conf.task_always_eager:  # it would run here, on this claim's rows
            transaction.on_commit(lambda: sweep_sla.delay(batch_size))
        else:
            sweep_sla.delay(batch_size)

    result = sla_sweep(batch_size=batch_size, on_full=next_sweep)
    if result.fired:
        logger.info(
            "SLA sweep: %d thresholds fired%s",
            result.fired,
            " (batch full, another follows)" if result.full else "",
        )
    return result.fired
