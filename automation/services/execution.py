"""Step execution: check a step, evaluate its condition, render its config, count the
attempt, call its handler (atomic steps in a savepoint of the caller's transaction,
external ones outside any transaction) and record the result."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from automation.actions import StepContext, StepFailed, StepResult, StepType, get_step_type
from automation.conditions import CompiledCondition, compile_cached
from automation.errors import RunStateError
from automation.events import caused_by
from automation.live import run_changed
from automation.models import ActionRun, Run, StepStatus
from automation.secrets import resolve_secret, step_config_render
from automation.services.common import (
    ACTIVE_RUN,
    engine_setting,
    step_definitions,
    step_save,
)
from automation.services.retry import step_failed
from automation.templating import TemplateRenderError, redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedStep:
    """A step checked, rendered and recorded as attempted, ready for its handler."""

    step_type: StepType
    ctx: StepContext
    step: dict[str, Any]
    secret_values: set[str]

    @property
    def run(self) -> Run:
        assert self.ctx.run is not None
        return self.ctx.run

    @property
    def action_run(self) -> ActionRun:
        assert self.ctx.action_run is not None
        return self.ctx.action_run


FINISHED = (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.FAILED)
# What a step skipped by its condition records as its output.
SKIPPED_OUTPUT = {"skipped": "condition was false"}


def context_with_steps(
    context: dict[str, Any],
    steps: dict[str, tuple[str, dict[str, Any] | None]],
    exclude: str | None = None,
) -> dict[str, Any]:
    """``context`` plus ``steps.<key>`` (output and status) for every finished step of
    ``steps`` (key -> (status, output)); the run and the dry run build it alike."""
    finished = {
        key: {**(output or {}), "status": status}
        for key, (status, output) in steps.items()
        if status in FINISHED and key != exclude
    }
    return {**context, "steps": finished}


def step_context(
    run: Run, action_runs: dict[str, ActionRun], exclude: str | None = None
) -> dict[str, Any]:
    """The run's context plus ``steps.<key>`` for every finished step."""
    return context_with_steps(
        run.context, {key: (ar.status, ar.output) for key, ar in action_runs.items()}, exclude
    )


def _step_definition(steps: list[dict[str, Any]], key: str) -> dict[str, Any]:
    for step in steps:
        if step["key"] == key:
            return step
    raise RunStateError(f"step '{key}' is not in this run's version")


def step_render(
    step_type: StepType,
    config: dict[str, Any],
    context: dict[str, Any],
    lookup: Callable[[str], str] = resolve_secret,
) -> tuple[dict[str, Any], set[str]]:
    """Render a step's config; only the step type's ``secret_fields`` may read secrets
    (the policy validation enforces on save holds at run time too)."""
    return step_config_render(step_type, config, context, lookup)


@dataclass(frozen=True)
class StepDecision:
    """What a step's checks decide before its handler: ``skip`` it (its condition is
    false), fail it with ``failure`` (an unknown type, a config that does not render), or
    call it with the rendered ``config``."""

    skip: bool = False
    failure: StepFailed | None = None
    config: dict[str, Any] | None = None
    secret_values: set[str] = field(default_factory=set)


def step_decide(
    step: dict[str, Any],
    step_type: StepType | None,
    condition: CompiledCondition | None,
    context: dict[str, Any],
    lookup: Callable[[str], str] = resolve_secret,
) -> StepDecision:
    """Decide a ready step: the engine (``step_prepare``) and the dry run
    (``workflows.simulation``, with a ``lookup`` that masks secrets) both call this."""
    if step_type is None:
        return StepDecision(
            failure=StepFailed(f"unknown step type '{step['type']}'", code="UNKNOWN_STEP_TYPE")
        )
    if condition is not None and not condition(context):
        return StepDecision(skip=True)
    try:
        config, secret_values = step_render(step_type, step.get("config") or {}, context, lookup)
    except (TemplateRenderError, StepFailed) as exc:
        failure = (
            exc
            if isinstance(exc, StepFailed)
            else StepFailed(str(exc), code=f"TEMPLATE_{exc.code.upper()}")
        )
        return StepDecision(failure=failure)
    return StepDecision(config=config, secret_values=secret_values)


def step_prepare(
    run: Run,
    action_run: ActionRun,
    steps: list[dict[str, Any]],
    action_runs: dict[str, ActionRun],
    now: Any,
) -> PreparedStep | None:
    """Check, evaluate the step's condition, render its config and count the attempt.

    Returns None when the step was settled here (skipped, or failed before its handler).
    The caller holds the ActionRun's row (or its run's) in its transaction.
    """
    step = _step_definition(steps, action_run.step_key)
    step_type = get_step_type(action_run.type)
    action_run.run = run
    context = step_context(run, action_runs, exclude=action_run.step_key)
    condition = (
        compile_cached((run.version_id, action_run.step_key), step["conditions"])
        if step.get("conditions") and step_type is not None
        else None
    )
    decision = step_decide(step, step_type, condition, context)
    if decision.skip:
        step_finish(action_run, StepStatus.SKIPPED, now, output=dict(SKIPPED_OUTPUT))
        return None
    if decision.failure is not None:
        step_failed(action_run, step, decision.failure, now)
        return None
    assert step_type is not None and decision.config is not None
    config, secret_values = decision.config, decision.secret_values
    action_run.attempts += 1
    action_run.started_at = action_run.started_at or now
    action_run.input = redact(config, secret_values)
    action_run.error = ""
    action_run.error_code = ""
    ctx = StepContext(
        config=config,
        context=context,
        step=step,
        run=run,
        action_run=action_run,
        attempt=action_run.attempts,
        timeout_seconds=step.get("timeout_seconds"),
    )
    return PreparedStep(step_type=step_type, ctx=ctx, step=step, secret_values=secret_values)


def mark_running(action_run: ActionRun, now: Any) -> None:
    """Commit an external step's attempt before its handler is called."""
    action_run.status = StepStatus.RUNNING
    action_run.updated_at = now
    action_run.save(
        update_fields=[
            "status",
            "attempts",
            "started_at",
            "input",
            "error",
            "error_code",
            "updated_at",
        ]
    )
    run_changed(action_run.run_id, action_run.status, step=action_run.step_key)  # live pages


def step_execute(*, action_run_id: int) -> None:
    """Execute one step if it is still due (a parallel branch, a retry after backoff);
    safe to call any number of times. Locks only the step, so branches run side by side.
    """
    with transaction.atomic():
        action_run = (
            ActionRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("run")
            .filter(pk=action_run_id)
            .first()
        )
        if action_run is None or action_run.status != StepStatus.PENDING:
            return
        run = action_run.run
        now = timezone.now()
        if run.status not in ACTIVE_RUN or (action_run.wake_at and action_run.wake_at > now):
            return
        action_runs = {ar.step_key: ar for ar in run.action_runs.exclude(pk=action_run.pk)}
        action_runs[action_run.step_key] = action_run
        prepared = step_prepare(run, action_run, step_definitions(run), action_runs, now)
        if prepared is None:
            return
        if prepared.step_type.atomic:
            step_call(prepared)
            return
        mark_running(action_run, now)
    # Outside the transaction: the attempt is recorded, the effect is external.
    step_call_external(prepared)


class StepRedo(Exception):
    """A step called without a savepoint raised: its transaction must be rolled back and
    done again with a savepoint per step, which records the failure as usual."""


def step_call(prepared: PreparedStep, *, savepoint: bool = True) -> None:
    """Call an atomic step's handler in a savepoint of the current transaction.

    Without ``savepoint`` the handler runs directly in the caller's transaction, and if it
    raises anything, :class:`StepRedo` is raised instead of recording the failure: nothing
    is recorded, and the caller rolls its whole transaction back (the steps it executed
    before included) and does it again with savepoints."""
    ctx, step, secret_values = prepared.ctx, prepared.step, prepared.secret_values
    action_run = prepared.action_run
    if not savepoint:
        try:
            with (
                caused_by(prepared.run.pk, prepared.run.causation_depth),
                statement_timeout(ctx.timeout_seconds),
            ):
                result = prepared.step_type.handler(ctx)
        except Exception as exc:
            raise StepRedo(action_run.step_key) from exc
        step_succeeded(action_run, result, secret_values)
        return
    try:
        with (
            transaction.atomic(),
            caused_by(prepared.run.pk, prepared.run.causation_depth),
            statement_timeout(ctx.timeout_seconds),
        ):
            result = prepared.step_type.handler(ctx)
    except StepFailed as exc:
        step_failed(action_run, step, exc, timezone.now(), secret_values)
        return
    except DatabaseError as exc:
        if not is_query_cancelled(exc):
            raise  # infrastructure: the task retries the whole step
        step_failed(
            action_run,
            step,
            StepFailed(
                f"the step took longer than its timeout of {ctx.timeout_seconds}s",
                code="TIMEOUT",
                retryable=True,
            ),
            timezone.now(),
            secret_values,
        )
        return
    except Exception as exc:
        log_step_error(action_run, exc, secret_values)
        step_failed(
            action_run,
            step,
            StepFailed(
                f"{type(exc).__name__}: {exc}",
                code="STEP_ERROR",
                retryable=True,
            ),
            timezone.now(),
            secret_values,
        )
        return
    step_succeeded(action_run, result, secret_values)


def log_step_error(action_run: ActionRun, exc: BaseException, secret_values: set[str]) -> None:
    """Log an unexpected step error with its traceback, secrets masked."""
    text = "".join(traceback.format_exception(exc))
    logger.error(
        "step %s of run %s raised:\n%s",
        action_run.step_key,
        action_run.run_id,
        redact(text, secret_values),
    )


@contextlib.contextmanager
def statement_timeout(seconds: float | None) -> Iterator[None]:
    """Bound an atomic step's database work (PostgreSQL's statement_timeout, for the
    handler's statements only). Non-atomic steps get the timeout in ``ctx`` instead."""
    if not seconds or connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true)", [str(int(seconds * 1000))]
        )
    # On an error the step's savepoint is rolled back, and the setting with it.
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', '0', true)")


def is_query_cancelled(exc: BaseException) -> bool:
    cause = exc.__cause__
    return type(cause).__name__ == "QueryCanceled"


def step_call_external(prepared: PreparedStep) -> None:
    """Call an external step's handler outside any transaction, then record the result."""
    ctx, step, secret_values = prepared.ctx, prepared.step, prepared.secret_values
    failure: StepFailed | None = None
    result: StepResult | None = None
    try:
        with caused_by(prepared.run.pk, prepared.run.causation_depth):
            result = prepared.step_type.handler(ctx)
    except StepFailed as exc:
        failure = exc
    except Exception as exc:
        log_step_error(prepared.action_run, exc, secret_values)
        failure = StepFailed(f"{type(exc).__name__}: {exc}", code="STEP_ERROR", retryable=True)
    with transaction.atomic():
        action_run = ActionRun.objects.select_for_update().get(pk=prepared.action_run.pk)
        if action_run.status != StepStatus.RUNNING:
            return  # cancelled or recovered meanwhile
        if failure is not None:
            step_failed(action_run, step, failure, timezone.now(), secret_values)
        else:
            assert result is not None
            step_succeeded(action_run, result, secret_values)


def step_succeeded(action_run: ActionRun, result: StepResult, secret_values: set[str]) -> None:
    from automation.tasks import publish, wake_step

    now = timezone.now()
    output = redact(result.output, secret_values) if result.output else result.output
    if result.progress is not None:
        action_run.progress = redact(result.progress, secret_values)
    if result.wait_until is not None or result.wait_for:
        action_run.status = StepStatus.WAITING
        action_run.output = output
        action_run.wake_at = result.wait_until
        action_run.waiting_on = result.wait_for or ""
        action_run.updated_at = now
        step_save(action_run)
        if result.wait_until is not None:
            seconds = (result.wait_until - now).total_seconds()
            if seconds <= engine_setting("WAKE_MESSAGE_MAX_SECONDS"):
                pk = action_run.pk
                transaction.on_commit(lambda: publish(wake_step, pk, countdown=max(seconds, 0)))
        return
    step_finish(action_run, StepStatus.COMPLETED, now, output=output)


def step_finish(
    action_run: ActionRun, status: str, now: Any, output: dict[str, Any] | None = None
) -> None:
    action_run.status = status
    action_run.output = output
    action_run.finished_at = now
    action_run.started_at = action_run.started_at or now
    action_run.wake_at = None
    action_run.updated_at = now
    step_save(action_run)
    run_changed(action_run.run_id, status, step=action_run.step_key)  # live pages
