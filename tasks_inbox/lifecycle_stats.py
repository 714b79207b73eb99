"""Figures of one lifecycle, read from its tasks and their history.

- **tasks per state**: the lifecycle's tasks in each state now (every state listed);
- **transitions fired per action** in the window ``[since, until)``: the history rows of
  each action (a claim that fired the ``on_claim`` transition counts as it; disabled actions are
  listed too, with what they fired before they were switched off);
- **median time in each state**: a stay in a state runs from the history row that entered
  it to the next row of the same task that changed its state; the stays that ended in the
  window are counted and their median taken (in seconds). A state no stay has left (a
  final state, or one tasks are still in) has no median.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import Lead
from django.utils import timezone

from config.aggregates import percentile, percentile_cont_sql
from config.errors import ValidationFailed
from config.params import datetime_params
from tasks_inbox.lifecycles import CLAIM_OPERATION, lifecycle_spec
from tasks_inbox.models import Task, TaskHistory
from workflows.models import Lifecycle

DEFAULT_DAYS = 30
MAX_DAYS = 3660


def stats_window(params: Any, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``since`` (ISO 8601, to ``until`` or now) or ``days`` back from ``until`` or now
    (default 30)."""
    moments, issues = datetime_params(params, ("since", "until"))
    until = moments.get("until") or now or timezone.now()
    since = moments.get("since")
    since_given = params.get("since") not in (None, "")
    days = params.get("days")
    if days not in (None, ""):
        if since_given:
            issues.append(("days", "give since or days, not both"))
        elif not re.fullmatch(r"[0-9]{1,5}", str(days)) or not 1 <= int(days) <= MAX_DAYS:
            issues.append(("days", f"must be a whole number from 1 to {MAX_DAYS}"))
        else:
            since = until - timedelta(days=int(days))
    elif not since_given:
        since = until - timedelta(days=DEFAULT_DAYS)
    if not issues and since is not None and since >= until:
        issues.append(("since", "must be before until"))
    if issues:
        raise ValidationFailed.from_issues(issues)
    assert since is not None
    return since, until


def _stays(
    lifecycle: Lifecycle, since: datetime, until: datetime
) -> QuerySet[TaskHistory, tuple[str, datetime, datetime]]:
    """The stays that ended in the window: ``(to_state, created_at, left_at)`` rows."""
    history = TaskHistory.objects.filter(task__lifecycle=lifecycle)
    active = history.filter(created_at__gte=since, created_at__lt=until).values("task_id")
    return (
        history.filter(task_id__in=active)  # a stay that ended in the window: its task too
        .exclude(from_state=F("to_state"))  # rows that changed the state
        .annotate(
            left_at=Window(
                Lead("created_at"),
                partition_by=[F("task_id")],
                order_by=[F("created_at").asc(), F("id").asc()],
            )
        )
        .filter(left_at__gte=since, left_at__lt=until)
        .values_list("to_state", "created_at", "left_at")
        .order_by()
    )


def _state_medians(
    lifecycle: Lifecycle, since: datetime, until: datetime
) -> dict[str, tuple[int, float]]:
    """Per state: how many stays ended in the window, and their median in seconds."""
    stays = _stays(lifecycle, since, until)
    if connection.vendor == "postgresql":
        # Django cannot aggregate over a window; the stays query (compiled by Django, its
        # values passed as parameters) is wrapped and its medians taken in the database.
        sql, params = stays.query.sql_with_params()
        with connection.cursor() as cursor:
            medians = (
                "SELECT stays.to_state, COUNT(*), "  # noqa: S608
                + percentile_cont_sql("EXTRACT(EPOCH FROM (stays.left_at - stays.created_at))", 0.5)
                + f" FROM ({sql}) stays GROUP BY stays.to_state"
            )
            cursor.execute(medians, params)
            return {state: (count, float(median)) for state, count, median in cursor.fetchall()}
    durations: dict[str, list[float]] = {}
    for state, entered, left in stays.iterator():
        durations.setdefault(state, []).append((left - entered).total_seconds())
    return {
        state: (len(values), float(percentile(values, 0.5) or 0.0))
        for state, values in durations.items()
    }


def lifecycle_stats(*, lifecycle: Lifecycle, since: datetime, until: datetime) -> dict[str, Any]:
    """Tasks per state, transitions fired per action in ``[since, until)``, and the median
    time spent in each state (see the module docstring)."""
    spec = lifecycle_spec(lifecycle)
    per_state = dict(
        Task.objects.filter(lifecycle=lifecycle)
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    fired_rows = TaskHistory.objects.filter(
        task__lifecycle=lifecycle,
        created_at__gte=since,
        created_at__lt=until,
    ).exclude(from_state="")  # the creation row
    fired = dict(
        fired_rows.filter(action__in=list(spec.transitions))
        .values_list("action")
        .annotate(n=Count("id"))
        .order_by()
    )
    moved_by_claim = fired_rows.filter(action=CLAIM_OPERATION).filter(~Q(from_state=F("to_state")))
    for transition in spec.transitions.values():  # a claim that moved the task fired it
        if transition.on_claim:
            fired[transition.action] = (
                fired.get(transition.action, 0)
                + moved_by_claim.filter(
                    from_state__in=transition.from_states, to_state=transition.to_state
                ).count()
            )
    medians = _state_medians(lifecycle, since, until)
    states = []
    for state in spec.states.values():
        stays, median = medians.get(state.key, (0, None))
        states.append(
            {
                "key": state.key,
                "label": state.label,
                "is_final": state.is_final,
                "is_enabled": state.is_enabled,
                "tasks": per_state.get(state.key, 0),
                "stays": stays,
                "median_seconds": round(median, 3) if median is not None else None,
            }
        )
    actions = [
        {
            "action": t.action,
            "label": t.label,
            "is_enabled": t.is_enabled,
            "from_states": list(t.from_states),
            "to_state": t.to_state,
            "fired": fired.get(t.action, 0),
        }
        for t in spec.transitions.values()
    ]
    return {
        "lifecycle": {"id": lifecycle.pk, "slug": lifecycle.slug, "name": lifecycle.name},
        "since": since,
        "until": until,
        "tasks": sum(per_state.values()),
        "transitions_fired": sum(a["fired"] for a in actions),
        "states": states,
        "actions": actions,
    }
