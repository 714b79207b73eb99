"""Celery tasks of the inbox: the SLA sweep (beat, every minute, on the ``sweeps`` queue)."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="flowdesk.sweep.sla")
def sweep_sla(batch_size: int | None = None) -> int:
    """Fire the SLA thresholds that are due (one batch); when the batch was full, enqueue
    another run at once instead of waiting for the next beat."""
    from tasks_inbox.sla.sweep import sla_sweep

    result = sla_sweep(batch_size=batch_size)
    if result.fired:
        logger.info(
            "SLA sweep: %d thresholds fired%s",
            result.fired,
            " (batch full, another follows)" if result.full else "",
        )
    if result.full:
        sweep_sla.delay(batch_size)
    return result.fired
