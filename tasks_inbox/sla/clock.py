"""A task's SLA clock, kept in the task's own columns (``Task.sla_*``).

The clock runs in stretches: ``sla_resumed_at`` is the start of the current stretch (empty
while paused, stopped or not started) and ``sla_elapsed_seconds`` the clock time of the
stretches before it. The clock time at ``t`` is therefore ``sla_elapsed_seconds +
clock_seconds(sla_resumed_at, t)`` (business seconds with working hours), and the moment a
threshold of ``s`` seconds is reached is ``clock_add(sla_resumed_at, s -
sla_elapsed_seconds)``.

- Start: at creation, or when the task first enters the config's ``start_state``.
- Pause: entering a state its lifecycle marks ``pauses_sla`` (the default lifecycle's
  ``blocked``) when the config pauses while blocked (the stretch is banked, ``sla_due_at``
  and ``sla_warning_at`` are cleared: a stopped clock has no due time); resume when it
  enters a state that does not pause: the due times move by the time spent paused.
- Stop: when the task reaches a final state. A completion is judged (``sla_met``: clock
  time within the target); a cancellation is not.

``sla_next_check_at`` is the earliest threshold (warning, breach, next escalation level) not
fired yet, or empty when there is none or the clock is not running; the sweep's due set is
the open tasks whose ``sla_next_check_at`` has passed (a partial index).

These functions change the task in memory and return the names of the fields they changed;
the caller (``tasks_inbox.services``) holds the task's row lock and saves them.
"""

from __future__ import annotations

from datetime import datetime

from tasks_inbox.lifecycles import lifecycle_spec
from tasks_inbox.models import SLAEventKind, Task
from tasks_inbox.sla.calendar import clock_add, clock_seconds
from tasks_inbox.sla.rules import SLASpec, Threshold, sla_config_for, sla_spec

CLOCK_FIELDS = [
    "sla_config",
    "sla_started_at",
    "sla_resumed_at",
    "sla_paused_at",
    "sla_elapsed_seconds",
    "sla_warning_at",
    "sla_due_at",
    "sla_next_check_at",
    "sla_stopped_at",
    "sla_met",
]


def task_spec(task: Task) -> SLASpec | None:
    return sla_spec(task.sla_config) if task.sla_config is not None else None


def clock_elapsed(task: Task, spec: SLASpec | None, now: datetime) -> float:
    """Clock seconds counted so far (at ``now``)."""
    running = 0.0
    if task.sla_resumed_at is not None:
        running = clock_seconds(spec.hours if spec else None, task.sla_resumed_at, now)
    return task.sla_elapsed_seconds + running


def threshold_at(task: Task, spec: SLASpec, seconds: float) -> datetime | None:
    """When the running clock reaches ``seconds`` (a past threshold: the stretch's start)."""
    if task.sla_resumed_at is None:
        return None
    if seconds <= task.sla_elapsed_seconds:
        return task.sla_resumed_at
    return clock_add(spec.hours, task.sla_resumed_at, seconds - task.sla_elapsed_seconds)


def threshold_fired(task: Task, threshold: Threshold) -> bool:
    if threshold.kind == SLAEventKind.WARNING:
        return task.sla_warned_at is not None
    if threshold.kind == SLAEventKind.BREACH:
        return task.sla_breached_at is not None
    return threshold.level <= task.sla_escalation_level


def pending_thresholds(task: Task, spec: SLASpec | None) -> list[tuple[Threshold, datetime]]:
    """The thresholds not fired yet, with when the clock reaches them, in order.

    A task without a config but with a fixed ``sla_due_at`` (given when it was created) has
    one threshold: the breach at that time.
    """
    if spec is None:
        if (
            task.sla_started_at is not None
            and task.sla_stopped_at is None
            and task.sla_due_at is not None
            and task.sla_breached_at is None
        ):
            return [(Threshold(SLAEventKind.BREACH, 0, 0.0), task.sla_due_at)]
        return []
    if task.sla_resumed_at is None:
        return []
    return [
        (threshold, at)
        for threshold in spec.thresholds
        if not threshold_fired(task, threshold)
        and (at := threshold_at(task, spec, threshold.seconds)) is not None
    ]


def clock_schedule(task: Task, spec: SLASpec | None) -> list[str]:
    """Recompute the due times and the next check from the clock (nothing else moves)."""
    if spec is not None:
        running = task.sla_resumed_at is not None
        warning = next((t for t in spec.thresholds if t.kind == SLAEventKind.WARNING), None)
        task.sla_warning_at = (
            threshold_at(task, spec, warning.seconds) if running and warning is not None else None
        )
        task.sla_due_at = threshold_at(task, spec, spec.target_seconds) if running else None
    pending = pending_thresholds(task, spec)
    active = spec is None or spec.is_active
    task.sla_next_check_at = pending[0][1] if pending and active and task.is_open else None
    return ["sla_warning_at", "sla_due_at", "sla_next_check_at"]


def clock_start(task: Task, spec: SLASpec, now: datetime) -> list[str]:
    task.sla_started_at = now
    task.sla_resumed_at = now
    task.sla_paused_at = None
    task.sla_elapsed_seconds = 0
    return [
        "sla_started_at",
        "sla_resumed_at",
        "sla_paused_at",
        "sla_elapsed_seconds",
        *clock_schedule(task, spec),
    ]


def clock_pause(task: Task, spec: SLASpec, now: datetime) -> list[str]:
    task.sla_elapsed_seconds = int(clock_elapsed(task, spec, now))
    task.sla_resumed_at = None
    task.sla_paused_at = now
    return ["sla_elapsed_seconds", "sla_resumed_at", "sla_paused_at", *clock_schedule(task, spec)]


def clock_resume(task: Task, spec: SLASpec, now: datetime) -> list[str]:
    task.sla_resumed_at = now
    task.sla_paused_at = None
    return ["sla_resumed_at", "sla_paused_at", *clock_schedule(task, spec)]


def clock_stop(task: Task, spec: SLASpec | None, now: datetime, *, completed: bool) -> list[str]:
    """The task ended: bank the last stretch and judge a completion against the target."""
    if task.sla_started_at is None or task.sla_stopped_at is not None:
        if task.sla_config_id and task.sla_started_at is None:
            task.sla_stopped_at = now  # never started: nothing to judge
            return ["sla_stopped_at"]
        return []
    task.sla_elapsed_seconds = int(clock_elapsed(task, spec, now))
    task.sla_resumed_at = None
    task.sla_paused_at = None
    task.sla_stopped_at = now
    task.sla_next_check_at = None
    if not completed:
        task.sla_met = None
    elif spec is not None:
        task.sla_met = task.sla_elapsed_seconds <= spec.target_seconds
    else:
        task.sla_met = task.sla_due_at is None or now <= task.sla_due_at
    return [
        "sla_elapsed_seconds",
        "sla_resumed_at",
        "sla_paused_at",
        "sla_stopped_at",
        "sla_next_check_at",
        "sla_met",
    ]


# --- the hooks of the task services ------------------------------------------------------


def clock_on_create(task: Task, *, now: datetime, due_at: datetime | None = None) -> None:
    """Give a new (not yet saved) task its SLA: the most specific active config, its clock
    started when the task starts in the config's start state; without a config, a fixed
    ``due_at`` given by the caller is the breach time."""
    config = sla_config_for(
        queue_id=task.queue_id, task_type=task.task_type, priority=task.priority
    )
    if config is None:
        if due_at is not None:
            task.sla_started_at = now
            task.sla_due_at = due_at
            task.sla_next_check_at = due_at
        return
    task.sla_config = config
    spec = sla_spec(config)
    if not spec.start_state or spec.start_state == task.state:
        clock_start(task, spec, now)


def clock_on_transition(
    task: Task, *, to_state: str, pauses: bool, final: bool, completed: bool, now: datetime
) -> list[str]:
    """Start, pause, resume or stop the clock for a task that just moved to ``to_state``
    (``pauses``: its lifecycle marks that state ``pauses_sla``)."""
    if not task.sla_config_id and task.sla_started_at is None:
        return []
    spec = task_spec(task)
    if final:
        return clock_stop(task, spec, now, completed=completed)
    if spec is None:
        return []
    if task.sla_started_at is None:
        return clock_start(task, spec, now) if to_state == spec.start_state else []
    if task.sla_resumed_at is not None and spec.pause_while_blocked and pauses:
        return clock_pause(task, spec, now)
    if task.sla_paused_at is not None and not pauses:
        return clock_resume(task, spec, now)
    return []


def clock_on_config_change(task: Task, spec: SLASpec, now: datetime) -> list[str]:
    """A config was edited: recompute an open task's due times from its clock (its start,
    its banked time and the new durations). What has fired stays fired; thresholds that are
    now in the past fire at the next sweep. Pausing follows the new setting at once."""
    if task.sla_stopped_at is not None or task.sla_started_at is None:
        return []
    if (
        task.sla_resumed_at is not None
        and spec.pause_while_blocked
        and lifecycle_spec(task.lifecycle).pauses_sla(task.state)
    ):
        return clock_pause(task, spec, now)
    if task.sla_paused_at is not None and not spec.pause_while_blocked:
        return clock_resume(task, spec, now)
    return clock_schedule(task, spec)
