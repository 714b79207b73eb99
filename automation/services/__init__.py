"""Runs: dispatching events into runs, executing steps, and the operations on runs.

The rules that make a run safe to execute on many workers at once:

- Every state change happens under a row lock (the run's for planning, the step's for
  executing), and every entry point re-checks state after taking it, so a redelivered or
  duplicated message does nothing.
- An atomic step's database effects commit in the same transaction as its ActionRun; a
  worker killed mid-step rolls both back and the step runs again, once. A run's
  consecutive atomic steps share one transaction (``run_advance``), with the step rows in
  memory, written at its end with one statement; their handlers run without a savepoint
  each, and one that raises has the whole transaction done again with savepoints, so its
  failure is recorded as it always is.
- A non-atomic step (email, webhook) commits its attempt first, then acts with the ActionRun
  id as its idempotency key, then records the result.
- Waiting is a row with a due time (``wake_at``) or a reference (``waiting_on``), swept by
  beat; a broker message is only a shortcut for short waits.
- Events are dispatched in batches claimed with ``SKIP LOCKED`` (``outbox_drain``): one
  transaction creates a batch's runs and executes their atomic steps (with no savepoint: a
  step that raises has the batch done again with savepoints). If it fails, the batch is
  redone one event per transaction, and an event that fails alone is put off with
  backoff, so no event can hold the others back. Under steady traffic the drain that took
  the message keeps the doorbell rung and claims the next windows' events itself, for up to
  a second (``DoorbellHold``): events committed meanwhile publish no message.

The package, by concern (each module imports only those above it):

- ``common``: engine settings, the active run statuses, a version's definition (cached),
  queueing a run's advance.
- ``creation``: runs and their pending ActionRuns (``run_create``, ``runs_create``).
- ``retry``: retry policy and backoff; what a failed attempt leaves (``step_failed``).
- ``execution``: preparing, calling and recording one step (``step_execute``).
- ``waits``: ending a wait (``step_wake``, ``step_resume``, the receiver of
  ``automation.signals.waiting_step_ended``).
- ``advance``: advancing a run under its lock (``run_advance``), and the typed work a
  locked advance leaves for after commit (``AfterCommit`` and its outcomes).
- ``dispatch``: events into runs and the outbox drain (``event_dispatch``,
  ``outbox_drain``, ``event_dispatch_put_off``).
- ``operations``: suspend, resume, cancel, retry, rerun, ``workflow_execute``.
- ``sweeps``: what beat runs (``outbox_redispatch``, ``runs_wake_due``,
  ``runs_resume_stale``).

The names below are the package's API; callers import them from ``automation.services``.
"""

from automation.services.advance import (
    AfterCommit,
    CallStep,
    CommitAndAdvance,
    HandOff,
    RunBranch,
    run_advance,
)
from automation.services.common import engine_setting, version_definition
from automation.services.creation import CreatedRun, RunSpec, run_create, runs_create
from automation.services.dispatch import event_dispatch, event_dispatch_put_off, outbox_drain
from automation.services.execution import step_execute
from automation.services.operations import (
    run_cancel,
    run_rerun,
    run_resume,
    run_retry,
    run_suspend,
    workflow_execute,
)
from automation.services.retry import backoff_delay, retry_policy
from automation.services.sweeps import outbox_redispatch, runs_resume_stale, runs_wake_due
from automation.services.waits import step_resume, step_wake

__all__ = [
    "AfterCommit",
    "CallStep",
    "CommitAndAdvance",
    "CreatedRun",
    "HandOff",
    "RunBranch",
    "RunSpec",
    "backoff_delay",
    "engine_setting",
    "event_dispatch",
    "event_dispatch_put_off",
    "outbox_drain",
    "outbox_redispatch",
    "retry_policy",
    "run_advance",
    "run_cancel",
    "run_create",
    "run_rerun",
    "run_resume",
    "run_retry",
    "run_suspend",
    "runs_create",
    "runs_resume_stale",
    "runs_wake_due",
    "step_execute",
    "step_resume",
    "step_wake",
    "version_definition",
    "workflow_execute",
]
