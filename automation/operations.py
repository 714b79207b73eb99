"""How runs are doing: each step's actual time against its expected time, progress, and an
on-track / delayed / blocked indicator (the run page's timeline and the monitoring page).

Expected time. A step's expected duration is the median (p50) of ``finished_at -
started_at`` of the completed step runs with the same workflow and step key, in runs created
in the last ``EXPECTED_WINDOW_DAYS`` days, the runs being judged left out. One grouped query
(``percentile_cont`` on PostgreSQL; on SQLite the median of a bounded sample) for every
(workflow, step key) on a page, however many runs it shows.

The indicator of an open run, the first rule that holds:

- **blocked**: the run is suspended; or a step failed; or a step is pending a retry after a
  failed attempt (``error_code`` set, ``wake_at`` due); or a step waits on a human task that
  is open and past its due time or its SLA due time (breached). Nothing will move it on
  time without someone acting.
- **delayed**: a running or waiting step has taken more than ``DELAY_FACTOR`` times its
  p50 plus ``DELAY_GRACE_SECONDS``; or the run has been going for longer than the sum of
  its steps' p50s by the same margin.
- **on_track**: otherwise (including steps with no history yet: nothing to judge them by).

A finished run is ``finished`` (completed or cancelled) or, when it failed, ``blocked``:
it waits for an operator's retry. Progress is ``steps done`` (completed or skipped) of
``steps planned`` (every step of the run's version; a run plans them all when it starts).

Human tasks belong to another app: whether a task is late comes from the hook it registers
with ``automation.monitoring.register_task_reports`` (``late_waits``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from automation import monitoring
from automation.models import RUN_OPEN_STATUSES, ActionRun, Run, RunStatus, StepStatus
from config.aggregates import PercentileCont, percentile, seconds_between
from config.templatetags.flowdesk import duration_text

EXPECTED_WINDOW_DAYS = 30
DELAY_FACTOR = 1.5
DELAY_GRACE_SECONDS = 2.0
SQLITE_SAMPLE = 5000

ON_TRACK, DELAYED, BLOCKED, FINISHED = "on_track", "delayed", "blocked", "finished"
INDICATOR_LABELS = {
    ON_TRACK: "on track",
    DELAYED: "delayed",
    BLOCKED: "blocked",
    FINISHED: "finished",
}
DONE_STATUSES = (StepStatus.COMPLETED, StepStatus.SKIPPED)
OPEN_STEP_STATUSES = (StepStatus.RUNNING, StepStatus.WAITING)
STEP_FIELDS = (
    "run_id",
    "step_key",
    "type",
    "position",
    "status",
    "attempts",
    "error_code",
    "waiting_on",
    "wake_at",
    "started_at",
    "finished_at",
)


@dataclass(frozen=True)
class StepTiming:
    """One step of a run with its actual and expected seconds and where it sits on the
    timeline (``offset``/``length`` in seconds from the run's start; the expected bar is
    ``expected_offset``/``expected_seconds``)."""

    key: str
    type: str
    status: str
    attempts: int
    error_code: str
    waiting_on: str
    actual_seconds: float | None
    expected_seconds: float | None
    offset: float | None
    expected_offset: float
    late: bool


@dataclass(frozen=True)
class RunHealth:
    indicator: str
    reasons: list[str]
    steps_done: int
    steps_planned: int
    elapsed_seconds: float
    expected_seconds: float | None
    steps: list[StepTiming] = field(default_factory=list)
    finished: bool = False

    @property
    def label(self) -> str:
        return INDICATOR_LABELS[self.indicator]

    @property
    def progress_pct(self) -> float:
        return round(100 * self.steps_done / self.steps_planned, 1) if self.steps_planned else 0.0


def expected_step_seconds(
    pairs: Iterable[tuple[int, str]], *, exclude_runs: Iterable[int] = ()
) -> dict[tuple[int, str], float]:
    """p50 seconds of each (workflow id, step key) over recent completed step runs."""
    pairs = set(pairs)
    if not pairs:
        return {}
    since = timezone.now() - dt.timedelta(days=EXPECTED_WINDOW_DAYS)
    steps = ActionRun.objects.filter(
        run__workflow_id__in={wf for wf, _ in pairs},
        step_key__in={key for _, key in pairs},
        run__created_at__gte=since,
        status=StepStatus.COMPLETED,
        started_at__isnull=False,
        finished_at__isnull=False,
    ).exclude(run_id__in=list(exclude_runs))
    found: dict[tuple[int, str], float] = {}
    if settings.DATABASE_IS_POSTGRES:
        took = seconds_between("started_at", "finished_at")
        rows = (
            steps.values("run__workflow_id", "step_key")
            .annotate(p50=PercentileCont(took, 0.5))
            .order_by()
        )
        for row in rows:
            found[(row["run__workflow_id"], row["step_key"])] = float(row["p50"])
    else:
        samples: dict[tuple[int, str], list[float]] = {}
        recent = steps.values_list("run__workflow_id", "step_key", "started_at", "finished_at")
        for workflow_id, key, start, end in recent.order_by("-pk")[:SQLITE_SAMPLE]:
            if start is not None and end is not None:
                samples.setdefault((workflow_id, key), []).append((end - start).total_seconds())
        found = {pair: percentile(values, 0.5) or 0.0 for pair, values in samples.items()}
    return {pair: round(seconds, 3) for pair, seconds in found.items() if pair in pairs}


def late_waits(references: Iterable[str]) -> set[str]:
    """The ``waiting_on`` references (``task:42``) whose human task is open and late."""
    references = sorted({ref for ref in references if ref})
    hook = monitoring.task_reports()
    if not references or hook is None or hook.late_waits is None:
        return set()
    return set(hook.late_waits(references))


def _is_late(actual: float | None, expected: float | None) -> bool:
    return (
        actual is not None
        and expected is not None
        and actual > expected * DELAY_FACTOR + DELAY_GRACE_SECONDS
    )


def judge(
    run: dict[str, Any],
    steps: list[dict[str, Any]],
    expected: dict[tuple[int, str], float],
    late: set[str],
    now: dt.datetime,
) -> RunHealth:
    """The health of one run (``run``: a dict with ``workflow_id``, ``status``,
    ``created_at``, ``started_at``, ``finished_at``; ``steps``: its step rows as dicts,
    ordered by position) from the figures read for the whole page."""
    origin = run["started_at"] or run["created_at"]
    finished = run["status"] not in RUN_OPEN_STATUSES
    end = (run["finished_at"] or now) if finished else now
    elapsed = max((end - origin).total_seconds(), 0.0)
    timings: list[StepTiming] = []
    reasons: list[str] = []
    delayed: list[str] = []
    cursor = 0.0  # where the next step not yet started is expected to begin
    for step in steps:
        key, status = step["step_key"], step["status"]
        wanted = expected.get((run["workflow_id"], key))
        started, done_at = step["started_at"], step["finished_at"]
        if started is not None:
            stop = done_at or (now if status in OPEN_STEP_STATUSES and not finished else None)
            actual = max(((stop or started) - started).total_seconds(), 0.0)
            expected_offset = max((started - origin).total_seconds(), 0.0)
            offset: float | None = expected_offset
        else:
            actual, offset, expected_offset = None, None, cursor
        if status in (StepStatus.SKIPPED, StepStatus.CANCELLED) and started is None:
            step_end = expected_offset
        else:
            step_end = max(
                expected_offset + (wanted or 0.0),
                (offset or 0.0) + (actual or 0.0),
            )
        cursor = max(cursor, step_end)
        running = status in OPEN_STEP_STATUSES and not finished
        late_step = running and _is_late(actual, wanted)
        if status == StepStatus.FAILED:
            reasons.append(f"step {key} failed ({step['error_code'] or 'error'})")
        elif status == StepStatus.PENDING and step["error_code"] and step["attempts"]:
            reasons.append(f"step {key} is retrying after {step['error_code']}")
        elif status == StepStatus.WAITING and step["waiting_on"] in late:
            reasons.append(f"step {key} waits on {step['waiting_on']}, which is overdue")
        if late_step:
            delayed.append(
                f"step {key} has taken {duration_text(actual)}, expected {duration_text(wanted)}"
            )
        timings.append(
            StepTiming(
                key=key,
                type=step["type"],
                status=status,
                attempts=step["attempts"],
                error_code=step["error_code"],
                waiting_on=step["waiting_on"],
                actual_seconds=actual,
                expected_seconds=wanted,
                offset=offset,
                expected_offset=expected_offset,
                late=late_step,
            )
        )
    known = [t.expected_seconds for t in timings if t.expected_seconds is not None]
    total_expected = round(sum(known), 3) if known else None
    if run["status"] == RunStatus.SUSPENDED:
        reasons.insert(0, "the run is suspended")
    if finished:
        indicator = BLOCKED if run["status"] == RunStatus.FAILED else FINISHED
        if indicator == BLOCKED and not reasons:
            reasons.append("the run failed")
        if indicator == BLOCKED:
            reasons.append("it waits for a retry")
    elif reasons:
        indicator = BLOCKED
    else:
        if not delayed and _is_late(elapsed, total_expected):
            delayed.append(
                f"the run has taken {duration_text(elapsed)}, "
                f"expected {duration_text(total_expected)}"
            )
        indicator = DELAYED if delayed else ON_TRACK
        reasons = delayed
    return RunHealth(
        indicator=indicator,
        reasons=reasons,
        steps_done=sum(1 for t in timings if t.status in DONE_STATUSES),
        steps_planned=len(timings),
        elapsed_seconds=round(elapsed, 3),
        expected_seconds=total_expected,
        steps=timings,
        finished=finished,
    )


def _health_of(runs: list[dict[str, Any]]) -> dict[int, RunHealth]:
    """Health of each run in ``runs`` (dicts with ``id`` and the fields ``judge`` reads):
    three queries for the whole list (steps, expected times, late tasks)."""
    if not runs:
        return {}
    ids = [run["id"] for run in runs]
    by_run: dict[int, list[dict[str, Any]]] = {pk: [] for pk in ids}
    workflow_of = {run["id"]: run["workflow_id"] for run in runs}
    rows = ActionRun.objects.filter(run_id__in=ids).order_by("run_id", "position", "id")
    for step in rows.values(*STEP_FIELDS):
        by_run[step["run_id"]].append(step)
    pairs = {(workflow_of[s["run_id"]], s["step_key"]) for steps in by_run.values() for s in steps}
    expected = expected_step_seconds(pairs, exclude_runs=ids)
    waits = late_waits(
        s["waiting_on"]
        for steps in by_run.values()
        for s in steps
        if s["status"] == StepStatus.WAITING
    )
    now = timezone.now()
    return {run["id"]: judge(run, by_run[run["id"]], expected, waits, now) for run in runs}


RUN_FIELDS = ("id", "workflow_id", "status", "created_at", "started_at", "finished_at")


def run_health(run_id: int) -> RunHealth | None:
    """The timeline and indicator of run ``run_id`` (None when there is no such run)."""
    row = Run.objects.filter(pk=run_id).values(*RUN_FIELDS).first()
    if row is None:
        return None
    return _health_of([row])[row["id"]]


def active_runs_health(*, limit: int = 50) -> list[dict[str, Any]]:
    """The open runs, oldest first, with their progress and indicator (four queries)."""
    rows = list(
        Run.objects.filter(status__in=RUN_OPEN_STATUSES)
        .order_by("created_at", "id")
        .values(*RUN_FIELDS, "workflow__slug", "event__type")[:limit]
    )
    health = _health_of(rows)
    now = timezone.now()
    result = []
    for row in rows:
        judged = health[row["id"]]
        current = next((t.key for t in judged.steps if t.status in OPEN_STEP_STATUSES), None)
        result.append(
            {
                "id": row["id"],
                "workflow": row["workflow__slug"],
                "status": row["status"],
                "event_type": row["event__type"],
                "current_step": current,
                "created_at": row["created_at"],
                "age_seconds": int((now - row["created_at"]).total_seconds()),
                "health": judged,
            }
        )
    return result


def indicator_counts(runs: list[dict[str, Any]]) -> dict[str, int]:
    counts = {ON_TRACK: 0, DELAYED: 0, BLOCKED: 0}
    for run in runs:
        indicator = run["health"].indicator
        if indicator in counts:
            counts[indicator] += 1
    return counts


def _pct(seconds: float, span: float) -> float:
    return round(100 * seconds / span, 2)


def _bar(offset: float, length: float, span: float) -> dict[str, float]:
    """A bar's left and width in percent of the span, at least visible, never past 100."""
    left = min(_pct(offset, span), 99.4)
    return {"left": left, "width": round(min(max(_pct(length, span), 0.6), 100 - left), 2)}


def timeline(health: RunHealth) -> dict[str, Any]:
    """The Gantt rows of a run: per step the actual bar (start to end, or to now while it
    runs) and the expected bar (its p50, from its actual start, or from where the steps
    before it are expected to end when it has not started), as percentages of the span."""
    ends = [health.elapsed_seconds, health.expected_seconds or 0.0]
    for step in health.steps:
        ends.append(step.expected_offset + (step.expected_seconds or 0.0))
        if step.offset is not None:
            ends.append(step.offset + (step.actual_seconds or 0.0))
    span = max(max(ends), 1.0)
    rows = []
    for step in health.steps:
        actual = None
        if step.offset is not None:
            actual = _bar(step.offset, step.actual_seconds or 0.0, span)
        expected = None
        if step.expected_seconds is not None:
            expected = _bar(step.expected_offset, step.expected_seconds, span)
        rows.append({"step": step, "actual": actual, "expected": expected})
    return {
        "health": health,
        "rows": rows,
        "span_seconds": round(span, 3),
        "now_pct": _pct(health.elapsed_seconds, span),
    }
