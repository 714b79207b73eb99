"""Signals the engine defines for the apps built on it.

``waiting_step_ended``: a step that waits on something outside its run (``wait_for`` in
its ``StepResult``, e.g. ``task:12``) has ended. Send it inside the transaction that ended
the wait, with::

    waiting_step_ended.send(sender=..., action_run_id=..., output={...},
                            failed=False, error="")

The engine (connected in ``AutomationConfig.ready``) finishes the step, completed with
``output`` or, with ``failed=True``, failed with ``error`` (code ``TASK_CANCELLED``), in
that transaction, and advances the run after commit. A step no longer waiting (finished,
cancelled) is left as it is, so sending twice is harmless. Receivers run synchronously and
their errors propagate (``send``, not ``send_robust``): the wait ends with the transaction
or not at all.


``run_cancelling``: a run is about to be cancelled (``automation.services.run_cancel``),
under the run's lock and before its steps are touched, with ``run_id`` and
``waiting_action_run_ids``. The owner of what those steps wait on locks it now (``tasks_inbox``
locks the open tasks): ending a wait from the other side (completing a task) locks the task
and then the step, so a cancel that locked the step first and the task second could
deadlock with it. Lock order for both: the run, the task, the step.

``run_cancelled``: a run was cancelled (``automation.services.run_cancel``), in the
transaction that cancels it, with ``run_id`` and ``waiting_action_run_ids``, the steps that
were waiting on something outside the run (their ``waiting_on``, e.g. ``task:12``) and are
now cancelled. The owner of what they waited on ends it there (``tasks_inbox`` cancels the
open tasks); errors propagate, so the run is cancelled with its waits or not at all.
"""

from __future__ import annotations

from django.dispatch import Signal

waiting_step_ended = Signal()
run_cancelling = Signal()
run_cancelled = Signal()
