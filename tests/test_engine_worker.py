"""The engine with real Celery workers on PostgreSQL and Redis: nothing lost, nothing twice."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction

from automation import services
from automation.events import emit
from automation.models import ActionRun, Event, Run
from crm.demo import QUALIFY_HIGH_VALUE_LEADS
from crm.models import Deal, Lead
from tests.conftest import notes_on, wait_for
from workflows.services import workflow_save


def test_lead_created_is_qualified_by_the_worker(celery_worker: Any) -> None:
    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    with transaction.atomic():
        lead = Lead.objects.create(
            company_name="Worker Co", annual_revenue=Decimal("3000000"), budget=Decimal("100000")
        )
        Lead.objects.create(
            company_name="Below", annual_revenue=Decimal("10"), budget=Decimal("100000")
        )
    wait_for(lambda: Run.objects.filter(status="completed").exists(), message="the run")
    lead.refresh_from_db()
    assert lead.status == "qualified"
    assert len(notes_on(lead)) == 1
    time.sleep(0.5)
    assert Run.objects.count() == 1
    assert not Event.objects.filter(dispatched_at__isnull=True).exists()


def test_lost_dispatch_is_recovered_by_the_outbox_sweep(start_worker: Any) -> None:
    deal = Deal.objects.create(name="Outbox")
    workflow_save(
        document={
            "slug": "won",
            "name": "won",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "won"},
                }
            ],
        }
    )
    # The event row commits but its broker message is lost (no worker, queue purged).
    emit("deal.won", {"deal_id": deal.pk})
    from tests.conftest import purge_broker

    purge_broker()
    start_worker("w")
    time.sleep(1)
    assert Run.objects.count() == 0
    # deal.created and deal.won both lost their message.
    assert services.outbox_redispatch(older_than=timedelta(0)) == 2
    # A second sweep racing the first must not produce a second run.
    services.outbox_redispatch(older_than=timedelta(0))
    wait_for(lambda: Run.objects.filter(status="completed").exists(), message="the run")
    time.sleep(1)
    assert Run.objects.count() == 1
    assert notes_on(deal) == ["won"]


def test_worker_killed_mid_run_completes_with_each_effect_once(start_worker: Any) -> None:
    deal = Deal.objects.create(name="Crash")
    workflow_save(
        document={
            "slug": "crash",
            "name": "Crash",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "before",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "before"},
                },
                {"key": "slow", "type": "test_sleep", "config": {"seconds": 4}},
                {
                    "key": "after",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "after"},
                },
            ],
        }
    )
    first = start_worker("doomed")
    emit("deal.won", {"deal_id": deal.pk})
    wait_for(lambda: notes_on(deal) == ["before"], message="the first step")
    time.sleep(1)  # inside the slow step's transaction
    first.kill()
    run = Run.objects.get()
    assert run.status == "running"
    assert dict(run.action_runs.values_list("step_key", "status")) == {
        "before": "completed",
        "slow": "pending",
        "after": "pending",
    }

    start_worker("rescuer")
    # The stale-run sweep (beat runs it every minute; here with no grace period).
    assert services.runs_resume_stale(older_than=timedelta(0)) == 1
    wait_for(
        lambda: Run.objects.get(pk=run.pk).status == "completed",
        timeout=30,
        message="the run to complete after the crash",
    )
    assert notes_on(deal) == ["after", "before"]
    slow = ActionRun.objects.get(run=run, step_key="slow")
    assert slow.attempts == 1  # the killed attempt rolled back with its transaction


def test_short_delay_resumes_by_itself(celery_worker: Any) -> None:
    deal = Deal.objects.create(name="Later")
    workflow_save(
        document={
            "slug": "later",
            "name": "Later",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {"key": "wait", "type": "delay", "config": {"for": "2 seconds"}},
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "later"},
                },
            ],
        }
    )
    emit("deal.won", {"deal_id": deal.pk})
    wait_for(lambda: Run.objects.filter(status="waiting").exists(), message="the wait")
    assert notes_on(deal) == []
    wait_for(
        lambda: Run.objects.filter(status="completed").exists(),
        timeout=15,
        message="the delay to end",
    )
    step = ActionRun.objects.get(step_key="wait")
    assert step.finished_at - step.started_at >= timedelta(seconds=2)
    assert notes_on(deal) == ["later"]


def test_parallel_branches_run_on_several_workers(celery_worker: Any) -> None:
    deal = Deal.objects.create(name="Parallel")
    workflow_save(
        document={
            "slug": "par",
            "name": "Par",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "a",
                    "type": "test_sleep",
                    "after": [],
                    "config": {"seconds": 2, "deal_id": "{{deal_id}}"},
                },
                {
                    "key": "b",
                    "type": "test_sleep",
                    "after": [],
                    "config": {"seconds": 2, "deal_id": "{{deal_id}}"},
                },
                {
                    "key": "join",
                    "type": "add_note",
                    "after": ["a", "b"],
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "joined"},
                },
            ],
        }
    )
    emit("deal.won", {"deal_id": deal.pk})
    wait_for(lambda: Run.objects.filter(status="completed").exists(), timeout=20, message="the run")
    a = ActionRun.objects.get(step_key="a")
    b = ActionRun.objects.get(step_key="b")
    # The two 2-second branches overlapped on the two worker processes.
    assert a.started_at < b.finished_at and b.started_at < a.finished_at
    # Each branch's effect happened once, although two workers could both reach it.
    assert notes_on(deal) == ["joined", "slept in a", "slept in b"]
