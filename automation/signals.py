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
"""

from __future__ import annotations

from django.dispatch import Signal

waiting_step_ended = Signal()
