"""Advancing a run: under the run's lock, settle blocked steps, execute ready atomic steps
one after another, finish the run when nothing is left, and say what is left for after
commit (:class:`AfterCommit`)."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db import DatabaseError, transaction
from django.utils import timezone

from automation import graph
from automation.actions import get_step_type
from automation.live import run_changed
from automation.models import ActionRun, Run, RunStatus, StepStatus
from automation.services.common import (
    ACTIVE_RUN,
    CHAIN_SECONDS,
    INLINE_STEP_BUDGET,
    deferred_writes,
    run_save,
    step_definitions,
    steps_flush,
)
from automation.services.execution import (
    PreparedStep,
    StepRedo,
    mark_running,
    step_call,
    step_call_external,
    step_execute,
    step_prepare,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AfterCommit:
    """What a locked advance leaves for after its transaction commits.

    ``execute()`` does it in this process, after which the run is advanced again (for the
    step it finished: ``finishes``); a ``hands_off`` outcome instead hands the whole run to
    another worker.
    """

    hands_off: ClassVar[bool] = False

    def execute(self) -> None:
        """Nothing to do before advancing again."""

    @property
    def finishes(self) -> str | None:
        """The key of the step this work ends, whose dependents the next advance starts."""
        return None


@dataclass(frozen=True)
class CallStep(AfterCommit):
    """An external step, already marked running: call its handler after commit."""

    prepared: PreparedStep

    def execute(self) -> None:
        step_call_external(self.prepared)

    @property
    def finishes(self) -> str | None:
        return self.prepared.action_run.step_key


@dataclass(frozen=True)
class RunBranch(AfterCommit):
    """A parallel branch: execute this step in its own transaction (the other ready
    branches went to other workers), so the run's lock is not held while it works."""

    action_run_id: int
    step_key: str

    def execute(self) -> None:
        step_execute(action_run_id=self.action_run_id)

    @property
    def finishes(self) -> str | None:
        return self.step_key


@dataclass(frozen=True)
class CommitAndAdvance(AfterCommit):
    """A step ran in this transaction: commit it, then advance the run again."""

    step_key: str | None = None

    @property
    def finishes(self) -> str | None:
        return self.step_key


@dataclass(frozen=True)
class HandOff(AfterCommit):
    """The run goes on in another worker (``advance_run``); this one has other runs."""

    hands_off: ClassVar[bool] = True


def run_advance(*, run_id: int, inline_external: bool = True, finished: str | None = None) -> None:
    """Advance a run until it waits, finishes, or the inline budget is spent.

    Each round is one transaction under the run's lock that executes the ready atomic steps
    in sequence; an external step is marked running there and called after commit. Other
    ready steps (parallel branches) are handed to other workers. Without
    ``inline_external``, an external step or branches hand the whole run on to another
    worker (this one has other runs to finish).

    ``finished``: the key of the step whose end this advance follows (a branch that a
    worker just executed). Only the steps that step made ready are started: the other
    ready steps were handed out by the advance that made them ready, so each step's
    message is published once, and a run of N parallel branches costs O(N) messages.
    """
    from automation.tasks import advance_run, publish

    savepoints = False
    for _ in range(INLINE_STEP_BUDGET):
        try:
            with transaction.atomic():
                run = Run.objects.select_for_update(of=("self",)).filter(pk=run_id).first()
                if run is None:
                    return
                with deferred_writes():
                    work = advance_locked(
                        run,
                        inline_external=inline_external,
                        finished=finished,
                        chain=True,
                        savepoints=savepoints,
                    )
        except StepRedo:
            # A step raised with no savepoint under it: everything this transaction did
            # is rolled back; it is done again with a savepoint per step, which records
            # the failure (and retry) of that step as it always does.
            savepoints = True
            continue
        savepoints = False
        if work is None:
            return
        if work.hands_off:
            break
        work.execute()
        finished = work.finishes
    publish(advance_run, run_id)


def runs_advance(run_ids: list[int], *, inline_external: bool = True) -> list[int]:
    """Continue several runs (a batch's, after its commit): the chains of consecutive
    atomic steps of all of them in one transaction, then each run's work left for after
    commit as :func:`run_advance` does it. Returns the runs not advanced here (locked by
    another worker, or past the shared chain budget) for the caller to advance alone.

    One transaction for the runs' chains instead of one each: one statement locks the
    runs (``SKIP LOCKED``), one reads their steps, one writes what they decided, one
    commit. A step that raises without a savepoint makes the whole transaction roll back
    and run again with a savepoint per step (:class:`StepRedo`), as in
    :func:`run_advance`; an infrastructure error propagates (nothing was committed).
    """
    from automation.tasks import advance_run, publish

    savepoints = False
    while True:
        left: list[int] = []
        results: list[tuple[int, AfterCommit | None]] = []
        try:
            with transaction.atomic():
                runs = list(
                    Run.objects.select_for_update(of=("self",), skip_locked=True)
                    .filter(pk__in=run_ids)
                    .order_by("pk")
                )
                locked = {run.pk for run in runs}
                left = [pk for pk in run_ids if pk not in locked]
                rows: dict[int, list[ActionRun]] = {run.pk: [] for run in runs}
                for row in ActionRun.objects.filter(run_id__in=locked):
                    rows[row.run_id].append(row)
                started = time.monotonic()
                with deferred_writes():
                    for run in runs:
                        if results and time.monotonic() - started > CHAIN_SECONDS:
                            left.append(run.pk)
                            continue
                        for row in rows[run.pk]:
                            row.run = run
                        work = advance_locked(
                            run,
                            inline_external=inline_external,
                            new_rows=rows[run.pk],
                            chain=True,
                            savepoints=savepoints,
                        )
                        results.append((run.pk, work))
        except StepRedo:
            savepoints = True  # as in run_advance: again, a savepoint per step
            continue
        break
    for run_id, work in results:
        if work is None:
            continue
        if work.hands_off:
            publish(advance_run, run_id)
            continue
        try:
            work.execute()
            run_advance(run_id=run_id, inline_external=inline_external, finished=work.finishes)
        except DatabaseError:  # committed up to here: another attempt takes the run on
            logger.warning("run %s: continuing on another worker", run_id, exc_info=True)
            publish(advance_run, run_id)
    return left


def advance_locked(
    run: Run,
    *,
    fresh: bool = False,
    inline_external: bool = True,
    new_rows: list[ActionRun] | None = None,
    finished: str | None = None,
    chain: bool = False,
    savepoints: bool = True,
) -> AfterCommit | None:
    """Under the run's lock (held by the caller's transaction): settle blocked steps, run
    ready atomic steps one after another, finish the run when nothing is left.

    In a sequential stretch, the next atomic step executes right here, and the run is
    finished in the same transaction when that was its last step: one commit per step,
    planning included. Returns the work left for after commit, or ``None`` when there is
    none (the run waits, finished, or another worker has its next step):
    :class:`CommitAndAdvance` (commit, then advance again), :class:`CallStep` (an external
    step already marked running), or, where branches run in parallel, :class:`RunBranch`
    (a step to execute in its own transaction while the other ready branches go to other
    workers). ``fresh``: the run was created by the caller's transaction, so no other
    worker can be executing its steps; ``new_rows`` are its ActionRuns as just inserted,
    or as the caller read them under the run's lock (spares reading them again). Without
    ``inline_external`` (a batch of runs), an external step or a parallel branch is not
    left for this worker, which has other runs to finish: :class:`HandOff` says to hand
    the run to another worker after commit. ``finished``
    (see :func:`run_advance`): only the ready steps that depend on that step are started
    here; the others already have their worker.

    ``chain``: consecutive atomic steps all execute in this transaction, with the step
    rows in memory (for up to ``CHAIN_SECONDS``); the transaction ends at a step that talks
    outward or waits, at parallel branches, or when the run is finished. Without it, one
    step executes and :class:`CommitAndAdvance` says to commit it (a batch of runs does
    that, so that its commit is not held back by its runs' chains). Without
    ``savepoints``, handlers run with no savepoint of their own: one that raises raises
    :class:`StepRedo` (see :func:`run_advance`).
    """
    from automation.tasks import execute_step, publish

    if run.status not in ACTIVE_RUN:
        return None
    steps = step_definitions(run)
    deps = graph.dependencies(steps)
    allow = {s["key"]: bool(s.get("allow_failure")) for s in steps}
    handed_off: set[str] = set()
    executed = False
    executed_key: str | None = None
    # Steps whose end this advance follows or settled itself: it starts their dependents.
    ended: set[str] | None = {finished} if finished is not None else None
    run_dirty = False
    # Steps this transaction executed or settled (under the run's lock).
    settled_here: set[str] = set()

    def flush() -> None:
        nonlocal run_dirty
        if run_dirty:
            _save_run_state(run)
            run_dirty = False

    action_runs: dict[str, ActionRun] = {}
    started = time.monotonic()
    for round_ in range(INLINE_STEP_BUDGET):
        if not round_:
            # Read once: from here on, the rows in memory are what this transaction
            # decided (their writes may be deferred to its end: ``deferred_writes``).
            rows = new_rows if new_rows is not None else run.action_runs.all()
            action_runs = {ar.step_key: ar for ar in rows}
        # After a step ran here, the rows in memory are current for everything this
        # transaction decided; a branch another worker finished meanwhile only looks less
        # advanced, which can delay a decision to the next round but never make a wrong one.
        statuses = {key: ar.status for key, ar in action_runs.items()}
        now = timezone.now()

        # The planning decision the dry run makes too (workflows.simulation).
        plan = graph.plan(deps, statuses, allow)
        if plan.cancel:
            steps_flush()  # the rows this transaction changed, before the UPDATE
            _cancel_blocked(run, plan.cancel, now)
            for key in plan.cancel:
                statuses[key] = action_runs[key].status = StepStatus.CANCELLED

        if plan.outcome is not None:
            _run_finish(run, plan.outcome, action_runs, now)
            return None

        ready = [
            action_runs[key]
            for key in plan.ready
            if ((wake_at := action_runs[key].wake_at) is None or wake_at <= now)
            and key not in handed_off
        ]
        busy = any(s == StepStatus.RUNNING for s in statuses.values())
        status = RunStatus.RUNNING if ready or busy else RunStatus.WAITING
        if ended is not None and not executed:
            # Ready steps that follow none of ``ended`` were handed out when they became
            # ready: they are busy elsewhere, not this advance's to start again.
            mine = [ar for ar in ready if ended.intersection(deps[ar.step_key])]
            busy = busy or len(mine) < len(ready)
            ready = mine
        if run.status != status or run.started_at is None:
            run.status = status
            run.started_at = run.started_at or now
            run.updated_at = now
            # Saved below with whatever this round decides, or by _run_finish.
            run_dirty = True
        if not ready:
            flush()
            return None
        parallel = len(ready) > 1 or busy
        if executed and (not chain or parallel or time.monotonic() - started > CHAIN_SECONDS):
            flush()
            # Commit the steps executed here before starting the next one (branches are
            # handed out by the next advance).
            return CommitAndAdvance(step_key=executed_key)
        for extra in ready[1:] if inline_external or not parallel else ready:
            handed_off.add(extra.step_key)
            transaction.on_commit(functools.partial(publish, execute_step, extra.pk))
        if parallel and not inline_external:
            flush()
            return None
        first = ready[0]
        if not inline_external and not _is_atomic(first.type):
            flush()
            return HandOff()
        if parallel:
            # Branches run side by side: execute this one in its own transaction, after
            # this one commits, so the run's lock is not held while it works.
            flush()
            return RunBranch(action_run_id=first.pk, step_key=first.step_key)
        if not fresh and not (
            first.attempts == 0
            and deps[first.step_key]
            and settled_here.issuperset(deps[first.step_key])
        ):
            # A worker executing this step as a parallel branch holds its row: leave it.
            # (Not needed for a step that only became ready in this transaction, by steps
            # it settled: nobody else can have been given it yet.)
            locked = (
                ActionRun.objects.select_for_update(skip_locked=True)
                .filter(pk=first.pk, status=StepStatus.PENDING)
                .first()
            )
            if locked is None:
                flush()
                return None
            first = action_runs[locked.step_key] = locked
        prepared = step_prepare(run, first, steps, action_runs, now)
        settled_here.add(first.step_key)  # or waits/fails here: then nothing depends on it
        if prepared is None:
            if ended is not None:
                ended.add(first.step_key)
            if executed:
                executed_key = first.step_key  # what the steps ready next follow
            continue  # skipped or failed before its handler: plan again
        if prepared.step_type.atomic:
            step_call(prepared, savepoint=savepoints)
            executed = True
            executed_key = first.step_key
            continue
        mark_running(prepared.action_run, now)
        flush()
        return CallStep(prepared=prepared)
    flush()
    return CommitAndAdvance()


def _cancel_blocked(run: Run, reasons: dict[str, str], now: Any) -> None:
    """Cancel the steps that can never run, each saying which upstream step stopped it."""
    by_reason: dict[str, list[str]] = {}
    for key, reason in reasons.items():
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        ActionRun.objects.filter(run=run, step_key__in=keys).update(
            status=StepStatus.CANCELLED,
            error=f"{reason[0].upper()}{reason[1:]}.",
            error_code="UPSTREAM_FAILED",
            finished_at=now,
            updated_at=now,
        )


def _is_atomic(type_name: str) -> bool:
    step_type = get_step_type(type_name)
    return step_type is None or step_type.atomic  # an unknown type fails right here


def _save_run_state(run: Run) -> None:
    run_save(run)
    run_changed(run.pk, run.status)  # live run pages, after the commit


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
    run_save(run)
    run_changed(run.pk, run.status)  # live run pages, after the commit
