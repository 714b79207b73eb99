"""replay_events and run_sweeps."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from automation.events import emit
from automation.models import Run
from crm.models import Deal
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


def test_replay_starts_new_workflows_on_old_events_once(drain: Any) -> None:
    deal = Deal.objects.create(name="Old")
    for _ in range(3):
        emit("deal.won", {"deal_id": deal.pk})
    drain()
    assert Run.objects.count() == 0
    workflow_save(
        document={
            "slug": "late",
            "name": "Late",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "late"},
                }
            ],
        }
    )
    out = StringIO()
    call_command("replay_events", "--type", "deal.*", "--inline", stdout=out)
    # deal.created and the three deal.won events; only the latter start runs.
    assert "4 event(s) replayed; started 3 run(s)" in out.getvalue()
    call_command("replay_events", "--type", "deal.won", "--inline", stdout=StringIO())
    drain()
    assert Run.objects.filter(status="completed").count() == 3


def test_replay_dry_run_and_bad_dates() -> None:
    out = StringIO()
    call_command("replay_events", "--dry-run", stdout=out)
    assert "0 event(s) would be replayed" in out.getvalue()
    with pytest.raises(Exception, match="not an ISO datetime"):
        call_command("replay_events", "--since", "yesterday")


def test_run_sweeps_does_the_work_of_each_sweep(
    drain: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Given a run waiting on a delay that is over, a run whose worker died mid-step and an
    event whose dispatch was lost, when ``run_sweeps`` runs, then the delay is completed,
    the lost step is queued again, the event is dispatched, and the runs go on."""
    from celery.signals import before_task_publish

    from automation.models import ActionRun, Event, StepStatus
    from automation.services import event_dispatch, run_advance
    from automation.tasks import advance_run, dispatch_event

    workflow_save(
        document={
            "slug": "later",
            "name": "Later",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {"key": "wait", "type": "delay", "config": {"for": "1 hour"}},
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "on"},
                    "after": ["wait"],
                },
            ],
        }
    )
    deal = Deal.objects.create(name="Slow")
    emit("deal.won", {"deal_id": deal.pk})
    emit("deal.won", {"deal_id": deal.pk})
    drain()
    delayed, dying = Run.objects.filter(workflow__slug="later").order_by("pk")
    assert {delayed.status, dying.status} == {"waiting"}
    # the worker running the second run's delay died: the step is left running
    ActionRun.objects.filter(run=dying, step_key="wait").update(
        status=StepStatus.RUNNING, updated_at=timezone.now() - timedelta(hours=3)
    )
    Run.objects.filter(pk=dying.pk).update(status="running")
    lost = emit("deal.won", {"deal_id": deal.pk})  # its dispatch never happens
    Event.objects.filter(pk=lost.pk).update(occurred_at=timezone.now() - timedelta(hours=1))

    published: list[tuple[str, int]] = []

    def on_publish(sender: str | None = None, body: Any = None, **kwargs: Any) -> None:
        published.append((sender or "", body[0][0]))

    before_task_publish.connect(on_publish, weak=False)
    try:
        with (
            time_machine.travel(timezone.now() + timedelta(hours=2)),
            django_capture_on_commit_callbacks(execute=True),
        ):
            out = StringIO()
            call_command("run_sweeps", "--stale-after", "60", stdout=out)
    finally:
        before_task_publish.disconnect(on_publish)

    assert "outbox: 1 event(s) re-dispatched; wake: 1 step(s); stale: 1 run(s) resumed" in (
        out.getvalue()
    )
    woken = ActionRun.objects.get(run=delayed, step_key="wait")
    assert woken.status == StepStatus.COMPLETED and "waited_until" in woken.output
    requeued = ActionRun.objects.get(run=dying, step_key="wait")
    assert requeued.status == StepStatus.PENDING and "worker" in requeued.error
    assert sorted(published) == sorted(
        [
            (dispatch_event.name, lost.pk),
            (advance_run.name, delayed.pk),
            (advance_run.name, dying.pk),
        ]
    )

    # what the sweeps published, done as a worker would: the runs go on
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        run_advance(run_id=delayed.pk)
        event_dispatch(event_id=lost.pk)
        drain()
    delayed.refresh_from_db()
    assert delayed.status == "completed"
    assert Run.objects.filter(event=lost).count() == 1
