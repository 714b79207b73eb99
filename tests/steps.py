"""Step types used only by the tests, registered the way host code registers its own."""

from __future__ import annotations

import time

from automation.actions import StepContext, StepFailed, StepResult, object_schema, step_type
from automation.models import ActionRun

SLEEP_SCHEMA = object_schema({"seconds": {"type": "number"}, "marker": {"type": "string"}})


@step_type("test_sleep", schema=SLEEP_SCHEMA)
def test_sleep(ctx: StepContext) -> StepResult:
    """Hold the worker (inside the step's transaction) for a while."""
    time.sleep(float(ctx.config.get("seconds", 1)))
    return StepResult(output={"slept": ctx.config.get("seconds", 1)})


@step_type("test_flaky", schema=object_schema({"fail_times": {"type": "integer"}}))
def test_flaky(ctx: StepContext) -> StepResult:
    """Fail (retryably) for the first ``fail_times`` attempts, then succeed."""
    assert isinstance(ctx.action_run, ActionRun)
    if ctx.attempt <= int(ctx.config.get("fail_times", 1)):
        raise StepFailed(f"flaky failure #{ctx.attempt}", code="FLAKY", retryable=True)
    return StepResult(output={"attempt": ctx.attempt})
