"""Retry and backoff: a step's retry policy, the backoff between attempts, and what a
failed attempt leaves behind (pending again with a due time, or failed for good)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.db import transaction

from automation.actions import StepFailed, StepType, get_step_type
from automation.models import ActionRun, StepStatus
from automation.services.common import engine_setting, step_save
from automation.templating import redact


def retry_policy(step: dict[str, Any], step_type: StepType | None) -> dict[str, Any]:
    policy = {"max_attempts": 1, "backoff_seconds": 2, "max_backoff_seconds": 300}
    if step_type is not None:
        policy.update(step_type.default_retry)
    policy.update(step.get("retry") or {})
    return policy


def backoff_delay(policy: dict[str, Any], attempt: int) -> float:
    """Exponential backoff with "equal" jitter: a delay drawn between half and all of
    ``min(cap, base * 2**(attempt-1))``, so retries spread out but never come early."""
    ceiling = min(
        float(policy["max_backoff_seconds"]),
        float(policy["backoff_seconds"]) * (2 ** max(attempt - 1, 0)),
    )
    return random.uniform(ceiling / 2, ceiling)


def step_failed(
    action_run: ActionRun,
    step: dict[str, Any],
    exc: StepFailed,
    now: Any,
    secret_values: set[str] | None = None,
) -> None:
    """Record a failed attempt: retried after a backoff while the policy allows, else the
    step fails (``DEAD_LETTER`` once a retryable failure has used up its attempts)."""
    from automation.tasks import execute_step, publish

    secret_values = secret_values or set()
    policy = retry_policy(step, get_step_type(action_run.type))
    action_run.error = redact(exc.message, secret_values)
    action_run.error_code = exc.code
    if exc.output is not None:
        action_run.output = redact(exc.output, secret_values)
    action_run.updated_at = now
    if exc.retryable and action_run.attempts < int(policy["max_attempts"]):
        delay = backoff_delay(policy, action_run.attempts)
        if exc.retry_after is not None:
            delay = max(delay, float(exc.retry_after))
        action_run.status = StepStatus.PENDING
        action_run.wake_at = now + timedelta(seconds=delay)
        step_save(action_run)
        pk = action_run.pk
        if delay <= engine_setting("WAKE_MESSAGE_MAX_SECONDS"):
            transaction.on_commit(lambda: publish(execute_step, pk, countdown=delay))
        return
    if exc.retryable and action_run.attempts >= int(policy["max_attempts"]) > 1:
        action_run.error_code = "DEAD_LETTER"
        action_run.error = f"{action_run.error} (gave up after {action_run.attempts} attempts)"
    action_run.status = StepStatus.FAILED
    action_run.finished_at = now
    action_run.wake_at = None
    step_save(action_run)
