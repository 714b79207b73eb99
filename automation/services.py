"""Runs: dispatching events into runs, executing steps, and the operations on runs.

The rules that make a run safe to execute on many workers at once:

- Every state change happens under a row lock (the run's for planning, the step's for
  executing), and every entry point re-checks state after taking it, so a redelivered or
  duplicated message does nothing.
- An atomic step's database effects commit in the same transaction as its ActionRun; a
  worker killed mid-step rolls both back and the step runs again, once.
- A non-atomic step (email, webhook) commits its attempt first, then acts with the ActionRun
  id as its idempotency key, then records the result.
- Waiting is a row with a due time (``wake_at``) or a reference (``waiting_on``), swept by
  beat; a broker message is only a shortcut for short waits.
- Events are dispatched in batches claimed with ``SKIP LOCKED`` (``outbox_drain``): one
  transaction creates a batch's runs and executes their atomic steps. If it fails, the
  batch is redone one event per transaction, and an event that fails alone is put off with
  backoff, so no event can hold the others back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from automation import graph
from automation.actions import StepContext, StepFailed, StepResult, StepType, get_step_type
from automation.conditions import compile_cached
from automation.errors import RunStateError
from automation.events import caused_by, event_context, event_emit
from automation.matcher import trigger_index
from automation.models import (
    ActionRun,
    Event,
    EventSource,
    Run,
    RunStatus,
    StepStatus,
)
from automation.secrets import resolve_secret
from automation.templating import TemplateRenderError, redact, render_value

logger = logging.getLogger(__name__)

ACTIVE_RUN = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING)
INLINE_STEP_BUDGET = 50


def engine_setting(name: str) -> Any:
    return settings.FLOWDESK[name]


# --- dispatch -------------------------------------------------------------------------


@dataclass
class Dispatched:
    """What dispatching some events created, and what is left for after their commit."""

    run_ids: list[int]
    # (run id, work): work for ``_execute_after_commit`` in this process, or ``HAND_OFF``
    # (the run goes on in another worker, ``advance_run``).
    after_commit: list[tuple[int, PreparedStep | int | str]]


def event_dispatch(*, event_id: int, advance: bool = True,
                   inline_external: bool = True) -> list[int]:
    """Match an event against the triggers, create its runs and advance them (once, whoever
    calls); returns the ids of the runs it created.

    Runs whose steps are atomic finish in this one transaction. Work that must happen
    outside it (an external step, parallel branches) is done after commit, and those runs
    are advanced further (here, or with ``inline_external=False`` by another worker). With
    ``advance=False`` the runs are only created.
    """
    with transaction.atomic():
        event = (
            Event.objects.select_for_update(skip_locked=True).filter(pk=event_id).first()
        )
        if event is None or event.dispatched_at is not None:
            return []
        done = _dispatch_locked([event], advance=advance, inline_external=inline_external)
    _continue_after_commit(done, inline_external=inline_external)
    return done.run_ids


def outbox_drain(*, batch_size: int | None = None, max_batches: int = 20) -> int:
    """Dispatch the events waiting in the outbox, a batch per transaction; returns how many.

    What the ``flowdesk.dispatch_pending`` task runs when the doorbell rings (see
    ``automation.events.outbox_ring``). Batches are claimed with ``SKIP LOCKED``, so workers
    drain side by side: a full batch rings the doorbell again for another worker to help.
    If a batch fails, its events are dispatched one by one, so one bad event costs only
    itself (it is retried later, with backoff).
    """
    from automation.events import outbox_doorbell_reset, outbox_ring

    size = batch_size or engine_setting("DISPATCH_BATCH_SIZE")
    outbox_doorbell_reset()  # events committed from now on ring again
    total = 0
    for _ in range(max_batches):
        claimed, count = _dispatch_batch(size)
        total += count
        if claimed < size:
            return total
    outbox_ring()  # still full after its share: another message goes on
    return total


def _dispatch_batch(size: int) -> tuple[int, int]:
    """Claim up to ``size`` due events and dispatch them; (claimed, dispatched)."""
    from automation.events import outbox_ring

    now = timezone.now()
    event_ids: list[int] = []
    try:
        with transaction.atomic():
            events = list(
                Event.objects.select_for_update(skip_locked=True)
                .filter(dispatched_at__isnull=True)
                .filter(Q(dispatch_after__isnull=True) | Q(dispatch_after__lte=now))
                .order_by("occurred_at", "pk")[:size]
            )
            event_ids = [event.pk for event in events]
            if len(events) == size:
                outbox_ring()  # more may be waiting: another worker can take the next batch
            if not events:
                return 0, 0
            done = _dispatch_locked(events, advance=True, inline_external=False)
    except DatabaseError:
        if not event_ids:
            raise
        logger.warning("dispatching %s events together failed; one by one now",
                       len(event_ids), exc_info=True)
        return len(event_ids), _dispatch_each(event_ids)
    _continue_after_commit(done, inline_external=False)
    return len(event_ids), len(event_ids)


def _dispatch_each(event_ids: list[int]) -> int:
    """Dispatch events in a transaction each; an event that fails is put off (backoff)."""
    dispatched = 0
    for event_id in event_ids:
        try:
            event_dispatch(event_id=event_id, inline_external=False)
        except DatabaseError as exc:
            logger.exception("event %s could not be dispatched; retrying later", event_id)
            event_dispatch_put_off(event_id, exc)
        else:
            dispatched += 1
    return dispatched


def event_dispatch_put_off(event_id: int, exc: BaseException) -> None:
    """Record a failed dispatch on the event and leave it alone for a while (exponential
    backoff with jitter, 5 s doubling up to an hour); drains and sweeps try it again after."""
    attempts = Event.objects.filter(pk=event_id).values_list(
        "dispatch_attempts", flat=True).first()
    if attempts is None:
        return
    delay = backoff_delay({"backoff_seconds": 5, "max_backoff_seconds": 3600}, attempts + 1)
    Event.objects.filter(pk=event_id, dispatched_at__isnull=True).update(
        dispatch_attempts=F("dispatch_attempts") + 1,
        dispatch_after=timezone.now() + timedelta(seconds=delay),
        dispatch_error=f"{type(exc).__name__}: {exc}"[:2000],
    )


def _dispatch_locked(events: list[Event], *, advance: bool,
                     inline_external: bool) -> Dispatched:
    """Under the events' row locks: create the runs of every event in a few statements,
    mark the events dispatched, then advance each new run (its atomic steps execute here).
    """
    planned: list[tuple[Event, dict[str, Any], Any]] = []
    trigger_index.refresh()  # once for the batch
    for event in events:
        context = event_context(event)
        for candidate in trigger_index.match(event.type, context, refresh=False):
            planned.append((event, context, candidate))
    replayed = [event.pk for event in events if event.dispatch_attempts]
    started = set(
        Run.objects.filter(event_id__in=replayed, rerun_of__isnull=True)
        .values_list("event_id", "workflow_id")
    ) if planned and replayed else set()
    existing = versions_existing({candidate.version_id for _, _, candidate in planned})
    runs = runs_create([
        RunSpec(event=event, context=context, workflow_id=candidate.workflow_id,
                version_id=candidate.version_id, trigger_index=candidate.trigger_index)
        for event, context, candidate in planned
        # Not twice for a replayed event; not on a version deleted since it was indexed.
        if (event.pk, candidate.workflow_id) not in started
        and candidate.version_id in existing
    ])
    now = timezone.now()
    Event.objects.filter(pk__in=[event.pk for event in events]).update(
        dispatched_at=now, dispatch_attempts=F("dispatch_attempts") + 1,
        dispatch_after=None, dispatch_error="",
    )
    done = Dispatched(run_ids=[run.pk for run in runs], after_commit=[])
    # A batch's runs start here until its time budget is spent; the rest go to other
    # workers, so one slow step does not hold the whole batch's commit back for long.
    deadline = time.monotonic() + engine_setting("DISPATCH_INLINE_SECONDS")
    # The new runs' rows were inserted by this transaction: nobody else can hold them.
    for run in runs if advance else ():
        if run.status != RunStatus.PENDING:
            continue
        if not inline_external and time.monotonic() > deadline:
            done.after_commit.append((run.pk, HAND_OFF))
            continue
        work = _advance_locked(run, fresh=True, inline_external=inline_external)
        if work is not None:
            done.after_commit.append((run.pk, work))
    return done


def _continue_after_commit(done: Dispatched, *, inline_external: bool = True) -> None:
    """Carry on with the runs that have work outside their dispatching transaction: their
    next atomic steps here; external steps here too, or (``inline_external=False``, after a
    batch) in another worker."""
    for run_id, work in done.after_commit:
        if work is HAND_OFF:
            _enqueue_advance_now(run_id)
            continue
        try:
            _execute_after_commit(work)
            run_advance(run_id=run_id, inline_external=inline_external)
        except DatabaseError:  # the event is dispatched: another attempt takes the run on
            logger.warning("run %s: continuing on another worker", run_id, exc_info=True)
            _enqueue_advance_now(run_id)


def versions_existing(ids: set[int]) -> set[int]:
    from workflows.models import WorkflowVersion

    if not ids:
        return set()
    return set(WorkflowVersion.objects.filter(pk__in=ids).values_list("pk", flat=True))


@functools.lru_cache(maxsize=1024)
def version_definition(version_id: int) -> dict[str, Any]:
    """A version's definition, cached: versions are immutable once written."""
    from workflows.models import WorkflowVersion

    return WorkflowVersion.objects.values_list("definition", flat=True).get(pk=version_id)


@dataclass
class RunSpec:
    event: Event
    context: dict[str, Any]
    workflow_id: int
    version_id: int
    trigger_index: int | None
    rerun_of: Run | None = None


def run_create(*, event: Event, context: dict[str, Any], workflow_id: int, version_id: int,
               trigger_index: int | None, rerun_of: Run | None = None) -> Run:
    """A run of one workflow version for one event, with a pending ActionRun per step."""
    return runs_create([RunSpec(
        event=event, context=context, workflow_id=workflow_id, version_id=version_id,
        trigger_index=trigger_index, rerun_of=rerun_of,
    )])[0]


def runs_create(specs: list[RunSpec]) -> list[Run]:
    """Runs with a pending ActionRun per step: two INSERTs for any number of runs. A run
    past the causation depth limit is created failed, with the reason."""
    if not specs:
        return []
    now = timezone.now()
    limit = engine_setting("MAX_CAUSATION_DEPTH")
    runs = []
    for spec in specs:
        event = spec.event
        run = Run(
            workflow_id=spec.workflow_id, version_id=spec.version_id, event=event,
            trigger_index=spec.trigger_index, context=spec.context,
            causation_depth=event.causation_depth, rerun_of=spec.rerun_of,
            created_at=now, updated_at=now,
        )
        if event.causation_depth > limit:
            run.status = RunStatus.FAILED
            run.error_code = "DEPTH_LIMIT"
            run.error = (
                f"Causation depth limit reached: event {event.type} #{event.pk} is "
                f"{event.causation_depth} workflow steps away from its original cause "
                f"(limit {limit}); the chain stops here instead of looping. "
                f"It was raised by run #{event.caused_by_run_id}."
            )
            run.finished_at = now
        runs.append(run)
    if len(runs) == 1:
        runs[0].save(force_insert=True)
    else:
        Run.objects.bulk_create(runs)
    rows: list[ActionRun] = []
    for run in runs:
        if run.status != RunStatus.PENDING:
            logger.warning("run %s: %s", run.pk, run.error)
            continue
        steps = version_definition(run.version_id).get("steps") or []
        run._new_action_runs = [  # type: ignore[attr-defined]  (spares a query)
            ActionRun(run=run, step_key=step["key"], type=step["type"], position=position,
                      updated_at=now)
            for position, step in enumerate(steps)
        ]
        rows.extend(run._new_action_runs)  # type: ignore[attr-defined]
    ActionRun.objects.bulk_create(rows)
    if any(row.pk is None for row in rows):  # a database without RETURNING: read them
        for run in runs:
            run.__dict__.pop("_new_action_runs", None)
    return runs


# --- advancing a run ------------------------------------------------------------------


NEXT_STEP = "next-step"
HAND_OFF = "hand-off"  # the run goes on in another worker (``advance_run``)
# What the step helpers below change on an ActionRun (saved with update_fields).
STEP_FIELDS = ["status", "attempts", "input", "output", "progress", "error", "error_code",
               "wake_at", "waiting_on", "started_at", "finished_at", "updated_at"]


@dataclass
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


def run_advance(*, run_id: int, inline_external: bool = True) -> None:
    """Advance a run until it waits, finishes, or the inline budget is spent.

    Each round is one transaction under the run's lock that executes the ready atomic steps
    in sequence; an external step is marked running there and called after commit. Other
    ready steps (parallel branches) are handed to other workers. Without
    ``inline_external``, an external step or branches hand the whole run on to another
    worker (this one has other runs to finish).
    """
    from automation.tasks import advance_run

    for _ in range(INLINE_STEP_BUDGET):
        with transaction.atomic():
            run = Run.objects.select_for_update(of=("self",)).filter(pk=run_id).first()
            work = (_advance_locked(run, inline_external=inline_external)
                    if run is not None else None)
        if work is None:
            return
        if work is HAND_OFF:
            break
        _execute_after_commit(work)
    advance_run.delay(run_id)


def _execute_after_commit(work: PreparedStep | int | str) -> None:
    """Run what a locked advance left for outside its transaction."""
    if isinstance(work, PreparedStep):
        _step_call_external(work)
    elif isinstance(work, int):
        step_execute(action_run_id=work)


def _step_definitions(run: Run) -> list[dict[str, Any]]:
    return version_definition(run.version_id).get("steps") or []


def _advance_locked(run: Run, *, fresh: bool = False, inline_external: bool = True,
                    ) -> PreparedStep | int | str | None:
    """Under the run's lock (held by the caller's transaction): settle blocked steps, run
    ready atomic steps one after another, finish the run when nothing is left.

    In a sequential stretch, the next atomic step executes right here, and the run is
    finished in the same transaction when that was its last step: one commit per step,
    planning included. Returns the work left for after commit: ``NEXT_STEP`` (commit, then
    advance again), an external step already marked running, or (where branches run in
    parallel) the id of a step to execute in its own transaction while the other ready
    branches go to other workers. ``fresh``: the run was created by the caller's transaction,
    so no other worker can be executing its steps. Without ``inline_external`` (a batch of
    runs), an external step or a parallel branch is not left for this worker, which has other
    runs to finish: ``HAND_OFF`` says to hand the run to another worker after commit.
    """
    from automation.tasks import execute_step

    if run.status not in ACTIVE_RUN:
        return None
    steps = _step_definitions(run)
    deps = graph.dependencies(steps)
    allow = {s["key"]: bool(s.get("allow_failure")) for s in steps}
    handed_off: set[str] = set()
    executed = False
    run_dirty = False

    def flush() -> None:
        nonlocal run_dirty
        if run_dirty:
            _save_run_state(run)
            run_dirty = False

    action_runs: dict[str, ActionRun] = {}
    for _ in range(INLINE_STEP_BUDGET):
        if not executed:
            rows = run.__dict__.pop("_new_action_runs", None) if fresh else None
            action_runs = {ar.step_key: ar for ar in (rows or run.action_runs.all())}
        # After a step ran here, the rows in memory are current for everything this
        # transaction decided; a branch another worker finished meanwhile only looks less
        # advanced, which can delay a decision to the next round but never make a wrong one.
        statuses = {key: ar.status for key, ar in action_runs.items()}
        now = timezone.now()

        blocked = graph.blocked_steps(deps, statuses, allow)
        if blocked:
            ActionRun.objects.filter(run=run, step_key__in=blocked).update(
                status=StepStatus.CANCELLED, error="An earlier step failed.",
                error_code="UPSTREAM_FAILED", finished_at=now, updated_at=now,
            )
            for key in blocked:
                statuses[key] = action_runs[key].status = StepStatus.CANCELLED

        outcome = graph.run_outcome(deps, statuses, allow)
        if outcome is not None:
            _run_finish(run, outcome, action_runs, now)
            return None

        ready = [
            action_runs[key] for key in graph.ready_steps(deps, statuses, allow)
            if (action_runs[key].wake_at is None or action_runs[key].wake_at <= now)
            and key not in handed_off
        ]
        busy = any(s == StepStatus.RUNNING for s in statuses.values())
        status = RunStatus.RUNNING if ready or busy else RunStatus.WAITING
        if run.status != status or run.started_at is None:
            run.status = status
            run.started_at = run.started_at or now
            run.updated_at = now
            # Saved below with whatever this round decides, or by _run_finish.
            run_dirty = True
        if not ready:
            flush()
            return None
        if executed:
            flush()
            return NEXT_STEP  # commit this step before starting the next one
        parallel = len(ready) > 1 or busy
        for extra in ready[1:] if inline_external or not parallel else ready:
            handed_off.add(extra.step_key)
            transaction.on_commit(lambda pk=extra.pk: execute_step.delay(pk))
        if parallel and not inline_external:
            flush()
            return None
        first = ready[0]
        if not inline_external and not _is_atomic(first.type):
            flush()
            return HAND_OFF
        if parallel:
            # Branches run side by side: execute this one in its own transaction, after
            # this one commits, so the run's lock is not held while it works.
            flush()
            return first.pk
        if not fresh:
            # A worker executing this step as a parallel branch holds its row: leave it.
            first = (ActionRun.objects.select_for_update(skip_locked=True)
                     .filter(pk=first.pk, status=StepStatus.PENDING).first())
            if first is None:
                flush()
                return None
            action_runs[first.step_key] = first
        prepared = _step_prepare(run, first, steps, action_runs, now)
        if prepared is None:
            continue  # skipped or failed before its handler: plan again
        if prepared.step_type.atomic:
            _step_call(prepared)
            executed = True
            continue
        _mark_running(prepared.ctx.action_run, now)
        flush()
        return prepared
    flush()
    return NEXT_STEP


def _is_atomic(type_name: str) -> bool:
    step_type = get_step_type(type_name)
    return step_type is None or step_type.atomic  # an unknown type fails right here


def _save_run_state(run: Run) -> None:
    run.save(update_fields=["status", "started_at", "updated_at"])


def _enqueue_advance_now(run_id: int) -> None:
    from automation.tasks import advance_run

    advance_run.delay(run_id)


def _run_finish(run: Run, outcome: str, action_runs: dict[str, ActionRun], now: Any) -> None:
    run.status = RunStatus.COMPLETED if outcome == "completed" else RunStatus.FAILED
    run.finished_at = now
    run.updated_at = now
    if run.status == RunStatus.FAILED:
        failed = [ar for ar in action_runs.values() if ar.status == StepStatus.FAILED]
        first = min(failed, key=lambda ar: ar.position) if failed else None
        if first is not None:
            run.error = f"Step '{first.step_key}' failed: {first.error}"
            run.error_code = first.error_code or "STEP_FAILED"
    run.save(update_fields=["status", "started_at", "finished_at", "updated_at", "error",
                            "error_code"])


def step_context(run: Run, action_runs: dict[str, ActionRun], exclude: str | None = None
                 ) -> dict[str, Any]:
    """The run's context plus ``steps.<key>`` for every finished step."""
    finished = (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.FAILED)
    steps = {
        key: {**(ar.output or {}), "status": ar.status}
        for key, ar in action_runs.items() if ar.status in finished and key != exclude
    }
    return {**run.context, "steps": steps}


# --- executing a step -----------------------------------------------------------------


def _step_definition(steps: list[dict[str, Any]], key: str) -> dict[str, Any]:
    for step in steps:
        if step["key"] == key:
            return step
    raise RunStateError(f"step '{key}' is not in this run's version")


def step_render(step_type: StepType, config: dict[str, Any], context: dict[str, Any]
                ) -> tuple[dict[str, Any], set[str]]:
    result = render_value(config, context, secrets=resolve_secret,
                          modes=step_type.render_modes)
    return result.value, set(result.secrets_used)


def _step_prepare(run: Run, action_run: ActionRun, steps: list[dict[str, Any]],
                  action_runs: dict[str, ActionRun], now: Any) -> PreparedStep | None:
    """Check, evaluate the step's condition, render its config and count the attempt.

    Returns None when the step was settled here (skipped, or failed before its handler).
    The caller holds the ActionRun's row (or its run's) in its transaction.
    """
    step = _step_definition(steps, action_run.step_key)
    step_type = get_step_type(action_run.type)
    action_run.run = run
    if step_type is None:
        _step_failed(action_run, step, StepFailed(
            f"unknown step type '{action_run.type}'", code="UNKNOWN_STEP_TYPE"), now)
        return None
    context = step_context(run, action_runs, exclude=action_run.step_key)
    if step.get("conditions"):
        condition = compile_cached((run.version_id, action_run.step_key), step["conditions"])
        if not condition(context):
            _step_finish(action_run, StepStatus.SKIPPED, now,
                         output={"skipped": "condition was false"})
            return None
    try:
        config, secret_values = step_render(step_type, step.get("config") or {}, context)
    except (TemplateRenderError, StepFailed) as exc:
        failure = exc if isinstance(exc, StepFailed) else StepFailed(
            str(exc), code=f"TEMPLATE_{exc.code.upper()}")
        _step_failed(action_run, step, failure, now)
        return None
    action_run.attempts += 1
    action_run.started_at = action_run.started_at or now
    action_run.input = redact(config, secret_values)
    action_run.error = ""
    action_run.error_code = ""
    ctx = StepContext(
        config=config, context=context, step=step, run=run, action_run=action_run,
        attempt=action_run.attempts, timeout_seconds=step.get("timeout_seconds"),
    )
    return PreparedStep(step_type=step_type, ctx=ctx, step=step, secret_values=secret_values)


def _mark_running(action_run: ActionRun | None, now: Any) -> None:
    assert action_run is not None
    action_run.status = StepStatus.RUNNING
    action_run.updated_at = now
    action_run.save(update_fields=[
        "status", "attempts", "started_at", "input", "error", "error_code", "updated_at",
    ])


def step_execute(*, action_run_id: int) -> None:
    """Execute one step if it is still due (a parallel branch, a retry after backoff);
    safe to call any number of times. Locks only the step, so branches run side by side.
    """
    with transaction.atomic():
        action_run = (
            ActionRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("run").filter(pk=action_run_id).first()
        )
        if action_run is None or action_run.status != StepStatus.PENDING:
            return
        run = action_run.run
        now = timezone.now()
        if run.status not in ACTIVE_RUN or (action_run.wake_at and action_run.wake_at > now):
            return
        action_runs = {ar.step_key: ar for ar in run.action_runs.exclude(pk=action_run.pk)}
        action_runs[action_run.step_key] = action_run
        prepared = _step_prepare(run, action_run, _step_definitions(run), action_runs, now)
        if prepared is None:
            return
        if prepared.step_type.atomic:
            _step_call(prepared)
            return
        _mark_running(action_run, now)
    # Outside the transaction: the attempt is recorded, the effect is external.
    _step_call_external(prepared)


def _step_call(prepared: PreparedStep) -> None:
    """Call an atomic step's handler in a savepoint of the current transaction."""
    ctx, step, secret_values = prepared.ctx, prepared.step, prepared.secret_values
    action_run = ctx.action_run
    assert action_run is not None and ctx.run is not None
    try:
        with (transaction.atomic(), caused_by(ctx.run.pk, ctx.run.causation_depth),
              statement_timeout(ctx.timeout_seconds)):
            result = prepared.step_type.handler(ctx)
    except StepFailed as exc:
        _step_failed(action_run, step, exc, timezone.now(), secret_values)
        return
    except DatabaseError as exc:
        if not is_query_cancelled(exc):
            raise  # infrastructure: the task retries the whole step
        _step_failed(action_run, step, StepFailed(
            f"the step took longer than its timeout of {ctx.timeout_seconds}s",
            code="TIMEOUT", retryable=True), timezone.now(), secret_values)
        return
    except Exception as exc:
        log_step_error(action_run, exc, secret_values)
        _step_failed(action_run, step, StepFailed(
            f"{type(exc).__name__}: {exc}", code="STEP_ERROR", retryable=True,
        ), timezone.now(), secret_values)
        return
    _step_succeeded(action_run, result, secret_values)


def log_step_error(action_run: ActionRun, exc: BaseException, secret_values: set[str]) -> None:
    """Log an unexpected step error with its traceback, secrets masked."""
    text = "".join(traceback.format_exception(exc))
    logger.error("step %s of run %s raised:\n%s", action_run.step_key, action_run.run_id,
                 redact(text, secret_values))


@contextlib.contextmanager
def statement_timeout(seconds: float | None) -> Iterator[None]:
    """Bound an atomic step's database work (PostgreSQL's statement_timeout, for the
    handler's statements only). Non-atomic steps get the timeout in ``ctx`` instead."""
    if not seconds or connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                       [str(int(seconds * 1000))])
    # On an error the step's savepoint is rolled back, and the setting with it.
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', '0', true)")


def is_query_cancelled(exc: BaseException) -> bool:
    cause = exc.__cause__
    return type(cause).__name__ == "QueryCanceled"


def _step_call_external(prepared: PreparedStep) -> None:
    """Call an external step's handler outside any transaction, then record the result."""
    ctx, step, secret_values = prepared.ctx, prepared.step, prepared.secret_values
    assert ctx.action_run is not None and ctx.run is not None
    failure: StepFailed | None = None
    result: StepResult | None = None
    try:
        with caused_by(ctx.run.pk, ctx.run.causation_depth):
            result = prepared.step_type.handler(ctx)
    except StepFailed as exc:
        failure = exc
    except Exception as exc:
        log_step_error(ctx.action_run, exc, secret_values)
        failure = StepFailed(f"{type(exc).__name__}: {exc}", code="STEP_ERROR",
                             retryable=True)
    with transaction.atomic():
        action_run = ActionRun.objects.select_for_update().get(pk=ctx.action_run.pk)
        if action_run.status != StepStatus.RUNNING:
            return  # cancelled or recovered meanwhile
        if failure is not None:
            _step_failed(action_run, step, failure, timezone.now(), secret_values)
        else:
            assert result is not None
            _step_succeeded(action_run, result, secret_values)


def _step_succeeded(action_run: ActionRun, result: StepResult, secret_values: set[str]) -> None:
    from automation.tasks import wake_step

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
        action_run.save(update_fields=STEP_FIELDS)
        if result.wait_until is not None:
            seconds = (result.wait_until - now).total_seconds()
            if seconds <= engine_setting("WAKE_MESSAGE_MAX_SECONDS"):
                pk = action_run.pk
                transaction.on_commit(
                    lambda: wake_step.apply_async((pk,), countdown=max(seconds, 0)))
        return
    _step_finish(action_run, StepStatus.COMPLETED, now, output=output)


def _step_finish(action_run: ActionRun, status: str, now: Any,
                 output: dict[str, Any] | None = None) -> None:
    action_run.status = status
    action_run.output = output
    action_run.finished_at = now
    action_run.started_at = action_run.started_at or now
    action_run.wake_at = None
    action_run.updated_at = now
    action_run.save(update_fields=STEP_FIELDS)


def retry_policy(step: dict[str, Any], step_type: StepType | None) -> dict[str, Any]:
    policy = {"max_attempts": 1, "backoff_seconds": 2, "max_backoff_seconds": 300}
    if step_type is not None:
        policy.update(step_type.default_retry)
    policy.update(step.get("retry") or {})
    return policy


def backoff_delay(policy: dict[str, Any], attempt: int) -> float:
    """Exponential backoff with "equal" jitter: a delay drawn between half and all of
    ``min(cap, base * 2**(attempt-1))``, so retries spread out but never come early."""
    ceiling = min(float(policy["max_backoff_seconds"]),
                  float(policy["backoff_seconds"]) * (2 ** max(attempt - 1, 0)))
    return random.uniform(ceiling / 2, ceiling)


def _step_failed(action_run: ActionRun, step: dict[str, Any], exc: StepFailed, now: Any,
                 secret_values: set[str] | None = None) -> None:
    from automation.tasks import execute_step

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
        action_run.save(update_fields=STEP_FIELDS)
        pk = action_run.pk
        if delay <= engine_setting("WAKE_MESSAGE_MAX_SECONDS"):
            transaction.on_commit(lambda: execute_step.apply_async((pk,), countdown=delay))
        return
    if exc.retryable and action_run.attempts >= int(policy["max_attempts"]) > 1:
        action_run.error_code = "DEAD_LETTER"
        action_run.error = f"{action_run.error} (gave up after {action_run.attempts} attempts)"
    action_run.status = StepStatus.FAILED
    action_run.finished_at = now
    action_run.wake_at = None
    action_run.save(update_fields=STEP_FIELDS)


def step_wake(*, action_run_id: int) -> int | None:
    """Complete a due delay (or release a backed-off step); returns the run to advance."""
    with transaction.atomic():
        action_run = (
            ActionRun.objects.select_for_update(skip_locked=True)
            .filter(pk=action_run_id).first()
        )
        if action_run is None:
            return None
        now = timezone.now()
        if action_run.wake_at is None or action_run.wake_at > now:
            return None
        if action_run.status == StepStatus.WAITING and not action_run.waiting_on:
            output = {**(action_run.output or {}), "waited_until": action_run.wake_at.isoformat()}
            _step_finish(action_run, StepStatus.COMPLETED, now, output=output)
        elif action_run.status != StepStatus.PENDING:
            return None
        return action_run.run_id


def step_resume(*, action_run_id: int, output: dict[str, Any], failed: bool = False,
                error: str = "") -> None:
    """Finish a step that waited on something outside the run (a human task).

    Call inside the transaction that ended the task; the run advances after commit.
    """
    from automation.tasks import advance_run

    action_run = ActionRun.objects.select_for_update().filter(pk=action_run_id).first()
    if action_run is None or action_run.status != StepStatus.WAITING:
        return
    now = timezone.now()
    if failed:
        action_run.error = error
        action_run.error_code = "TASK_CANCELLED"
        _step_finish(action_run, StepStatus.FAILED, now, output=output)
    else:
        _step_finish(action_run, StepStatus.COMPLETED, now, output=output)
    run_id = action_run.run_id
    transaction.on_commit(lambda: advance_run.delay(run_id))


# --- operations -----------------------------------------------------------------------


def _locked_run(run_id: int) -> Run:
    run = Run.objects.select_for_update(of=("self",)).filter(pk=run_id).first()
    if run is None:
        raise RunStateError("Run not found.", code="NOT_FOUND")
    return run


def _enqueue_advance(run_id: int) -> None:
    from automation.tasks import advance_run

    transaction.on_commit(lambda: advance_run.delay(run_id))


@transaction.atomic
def run_suspend(*, run_id: int) -> Run:
    run = _locked_run(run_id)
    if run.status not in ACTIVE_RUN:
        raise RunStateError(f"A {run.status} run cannot be suspended.",
                            data={"status": run.status})
    run.status = RunStatus.SUSPENDED
    run.updated_at = timezone.now()
    run.save(update_fields=["status", "updated_at"])
    return run


@transaction.atomic
def run_resume(*, run_id: int) -> Run:
    run = _locked_run(run_id)
    if run.status != RunStatus.SUSPENDED:
        raise RunStateError(f"Only a suspended run can be resumed; this one is {run.status}.",
                            data={"status": run.status})
    run.status = RunStatus.RUNNING
    run.updated_at = timezone.now()
    run.save(update_fields=["status", "updated_at"])
    _enqueue_advance(run.pk)
    return run


@transaction.atomic
def run_cancel(*, run_id: int) -> Run:
    run = _locked_run(run_id)
    if run.status not in (*ACTIVE_RUN, RunStatus.SUSPENDED):
        raise RunStateError(f"A {run.status} run cannot be cancelled.",
                            data={"status": run.status})
    now = timezone.now()
    run.action_runs.filter(
        status__in=[StepStatus.PENDING, StepStatus.WAITING, StepStatus.RUNNING],
    ).update(status=StepStatus.CANCELLED, finished_at=now, updated_at=now, wake_at=None,
             error="The run was cancelled.", error_code="CANCELLED")
    run.status = RunStatus.CANCELLED
    run.finished_at = now
    run.updated_at = now
    run.save(update_fields=["status", "finished_at", "updated_at"])
    return run


@transaction.atomic
def run_retry(*, run_id: int) -> Run:
    """Retry a failed run from its failed step(s); completed steps are not repeated."""
    run = _locked_run(run_id)
    if run.status != RunStatus.FAILED:
        raise RunStateError(f"Only a failed run can be retried; this one is {run.status}.",
                            data={"status": run.status})
    if run.error_code == "DEPTH_LIMIT":
        raise RunStateError("A run stopped by the causation depth limit cannot be retried.",
                            data={"status": run.status})
    now = timezone.now()
    run.action_runs.filter(
        Q(status=StepStatus.FAILED) | Q(status=StepStatus.CANCELLED, error_code="UPSTREAM_FAILED"),
    ).update(status=StepStatus.PENDING, error="", error_code="", finished_at=None,
             wake_at=None, attempts=0, updated_at=now)
    run.status = RunStatus.RUNNING
    run.error = ""
    run.error_code = ""
    run.finished_at = None
    run.updated_at = now
    run.save(update_fields=["status", "error", "error_code", "finished_at", "updated_at"])
    _enqueue_advance(run.pk)
    return run


@transaction.atomic
def run_rerun(*, run_id: int) -> Run:
    """Start the run's event again on the workflow's current version, as a new run."""
    original = Run.objects.select_related("workflow", "event").get(pk=run_id)
    version_id = original.workflow.published_version_id
    if version_id is None:
        raise RunStateError("The workflow has no published version.")
    run = run_create(event=original.event, context=original.context,
                     workflow_id=original.workflow_id, version_id=version_id,
                     trigger_index=original.trigger_index, rerun_of=original)
    _enqueue_advance(run.pk)
    return run


def workflow_execute(*, workflow_id: int, payload: dict[str, Any], actor: Any = None) -> Run:
    """Run a workflow by hand with ``payload`` as its context (no trigger matching)."""
    from workflows.models import Workflow

    with transaction.atomic():
        workflow = Workflow.objects.get(pk=workflow_id)
        if workflow.published_version_id is None:
            raise RunStateError("The workflow has no published version to run.")
        event = event_emit(f"workflow.{workflow.slug}.executed", payload, actor=actor,
                           source=EventSource.MANUAL, dispatch=False)
        run = run_create(event=event, context=event_context(event), workflow_id=workflow.pk,
                         version_id=workflow.published_version_id, trigger_index=None)
        Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now())
        _enqueue_advance(run.pk)
    return run


# --- sweeps ---------------------------------------------------------------------------


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
