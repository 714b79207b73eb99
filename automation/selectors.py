"""Reads of runs for the API and the pages (no writes)."""

from __future__ import annotations

from typing import Any

from automation.models import Run, StepStatus


def run_timeline(run: Run) -> list[dict[str, Any]]:
    """The run's timeline, oldest first: created, started, each step's start (with its
        attempts) and outcome (waiting and failed steps included), the operations done to it by
    hand (with their actor) and the run's end."""
    entries: list[dict[str, Any]] = [
        {"at": run.created_at, "what": "run.created", "event": run.event.type}
    ]
    if run.started_at:
        entries.append({"at": run.started_at, "what": "run.started"})
    for step in run.action_runs.order_by("position"):
        if step.started_at:
            entries.append(
                {
                    "at": step.started_at,
                    "what": "step.started",
                    "step": step.step_key,
                    "attempts": step.attempts,
                }
            )
        if step.finished_at or step.status in (StepStatus.WAITING, StepStatus.FAILED):
            entries.append(
                {
                    "at": step.finished_at or step.updated_at,
                    "what": f"step.{step.status}",
                    "step": step.step_key,
                    "error": step.error or None,
                    "error_code": step.error_code or None,
                }
            )
    for operation in run.operations.select_related("actor"):
        entries.append(
            {
                "at": operation.at,
                "what": f"run.{operation.kind}",
                "actor": operation.actor.get_username() if operation.actor else None,
                "from_status": operation.from_status,
                "to_status": operation.to_status,
                "new_run": operation.new_run_id,
            }
        )
    if run.finished_at:
        entries.append(
            {"at": run.finished_at, "what": f"run.{run.status}", "error": run.error or None}
        )
    entries.sort(key=lambda e: e["at"])
    return entries
