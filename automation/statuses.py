"""The statuses of runs and of their steps, defined once.

Plain strings compare equal to the members (``StepStatus.COMPLETED == "completed"``), so
the graph functions, the models' choices, the API and the templates share one vocabulary.
"""

from __future__ import annotations

from django.db.models import TextChoices


class RunStatus(TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(TextChoices):
    """Status of one step of a run (an ActionRun)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


RUN_IN_FLIGHT_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
"""A run a worker has or will pick up."""

RUN_ACTIVE_STATUSES = (*RUN_IN_FLIGHT_STATUSES, RunStatus.WAITING)
"""A run the engine moves on: its steps may start."""

RUN_OPEN_STATUSES = (*RUN_ACTIVE_STATUSES, RunStatus.SUSPENDED)
"""A run that has not finished: active, or suspended by an operator."""

RUN_FINISHED_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
