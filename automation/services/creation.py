"""Run creation: a run per matched trigger, with a pending ActionRun per step, in a few
statements for any number of runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from automation.models import ActionRun, Event, Run, RunStatus
from automation.services.common import engine_setting, rows_insert, version_definition

logger = logging.getLogger(__name__)


@dataclass
class RunSpec:
    event: Event
    context: dict[str, Any]
    workflow_id: int
    version_id: int
    trigger_index: int | None
    rerun_of: Run | None = None


@dataclass(frozen=True)
class CreatedRun:
    """A run just inserted, with the ActionRun rows inserted for it (``None`` when they must
    be read back: the run was created failed, or the database returned no ids)."""

    run: Run
    action_runs: list[ActionRun] | None


def run_create(
    *,
    event: Event,
    context: dict[str, Any],
    workflow_id: int,
    version_id: int,
    trigger_index: int | None,
    rerun_of: Run | None = None,
) -> Run:
    """A run of one workflow version for one event, with a pending ActionRun per step."""
    return runs_create(
        [
            RunSpec(
                event=event,
                context=context,
                workflow_id=workflow_id,
                version_id=version_id,
                trigger_index=trigger_index,
                rerun_of=rerun_of,
            )
        ]
    )[0].run


def runs_create(specs: list[RunSpec]) -> list[CreatedRun]:
    """Runs with a pending ActionRun per step: two INSERTs for any number of runs
    (``rows_insert``). A run past the causation depth limit is created failed, with the
    reason."""
    if not specs:
        return []
    now = timezone.now()
    limit = engine_setting("MAX_CAUSATION_DEPTH")
    runs = []
    for spec in specs:
        event = spec.event
        run = Run(
            workflow_id=spec.workflow_id,
            version_id=spec.version_id,
            event=event,
            trigger_index=spec.trigger_index,
            context=spec.context,
            causation_depth=event.causation_depth,
            rerun_of=spec.rerun_of,
            created_at=now,
            updated_at=now,
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
    rows_insert(runs)
    per_run: list[list[ActionRun] | None] = []
    rows: list[ActionRun] = []
    for run in runs:
        if run.status != RunStatus.PENDING:
            logger.warning("run %s: %s", run.pk, run.error)
            per_run.append(None)
            continue
        steps = version_definition(run.version_id).get("steps") or []
        new_rows = [
            ActionRun(
                run=run, step_key=step["key"], type=step["type"], position=position, updated_at=now
            )
            for position, step in enumerate(steps)
        ]
        per_run.append(new_rows)
        rows.extend(new_rows)
    rows_insert(rows)
    if any(row.pk is None for row in rows):  # a database without RETURNING: read them
        per_run = [None] * len(runs)
    return [
        CreatedRun(run=run, action_runs=new_rows)
        for run, new_rows in zip(runs, per_run, strict=True)
    ]
