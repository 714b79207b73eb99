"""Draining the outbox in batches: the doorbell, batched statements, bad events put off,
hand-offs, and workers draining side by side without doing anything twice."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import redis
import time_machine
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import services
from automation.events import emit
from automation.models import ActionRun, Event, Note, Run
from crm.models import Deal
from tests.conftest import notes_on, purge_broker, wait_for
from workflows.services import workflow_save


def note_workflow(slug: str, event_type: str, note: str = "noted") -> None:
    workflow_save(
        document={
            "slug": slug,
            "name": slug,
            "triggers": [{"event_type": event_type}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": note},
                }
            ],
        }
    )


def statements(queries: CaptureQueriesContext, prefix: str) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].startswith(prefix))


def test_a_batch_creates_its_runs_in_one_statement_per_table(db: Any) -> None:
    note_workflow("batch", "deal.won")
    deals = [Deal.objects.create(name=f"D{i}") for i in range(20)]
    Event.objects.update(dispatched_at=timezone.now())  # only the deal.won events below
    with transaction.atomic():
        for deal in deals:
            emit("deal.won", {"deal_id": deal.pk})
    with CaptureQueriesContext(connection) as queries:
        assert services.outbox_drain(batch_size=25) == 20
    assert Run.objects.filter(status="completed").count() == 20
    assert all(notes_on(deal) == ["noted"] for deal in deals)
    assert not Event.objects.filter(dispatched_at__isnull=True).exists()
    # Claimed, created and marked together; only each run's own step is per run.
    assert statements(queries, 'INSERT INTO "automation_run"') == 1
    assert statements(queries, 'INSERT INTO "automation_actionrun"') == 1
    claims = statements(queries, 'UPDATE "automation_event"') + sum(
        1 for q in queries.captured_queries if "FROM automation_outbox_claim(" in q["sql"]
    )
    assert claims == 1
    assert statements(queries, 'INSERT INTO "automation_note"') == 20
    per_run = len(queries.captured_queries) / 20
    assert per_run < 8, f"{per_run:.1f} statements per run"


def claim_buffers() -> int:
    """Shared buffers one claim reads (it claims nothing: it is rolled back)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
            "SELECT * FROM automation_outbox_claim(now(), 25)"
        )
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)
    if isinstance(plan, str):
        plan = json.loads(plan)
    node = plan[0]["Plan"]
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


@pytest.mark.postgres
def test_a_claim_does_not_read_the_events_dispatched_before_it_again(
    transactional_db: Any,
) -> None:
    """Dispatched events stay in the outbox index until a vacuum; the claim passes them in
    the index's order, marking them as it goes, instead of visiting each one's table page
    on every claim (a bitmap scan does)."""
    with transaction.atomic():
        for seq in range(4000):
            emit("bench.nothing", {"seq": seq})  # no workflow listens: no runs, one claim
    assert services.outbox_drain(batch_size=1000) == 4000
    emit("bench.nothing", {"seq": -1})
    claim_buffers()  # the first claim after the drain marks the dispatched entries
    # 4,000 events fill about a hundred table pages (a bitmap scan reads 120 buffers);
    # the claim reads the index pages they left (about 40 buffers in all).
    assert claim_buffers() < 70


def test_a_step_that_fails_in_a_batch_has_the_batch_done_again_with_savepoints(
    db: Any,
) -> None:
    """A batch's first steps run with no savepoint: when one fails, the whole batch is
    rolled back and done again with a savepoint per step, so the failure is recorded (and
    its retry planned) and every other run of the batch completes once."""
    note_workflow("noted", "deal.won")
    workflow_save(
        document={
            "slug": "flaky",
            "name": "flaky",
            "triggers": [{"event_type": "deal.lost"}],
            "steps": [
                {
                    "key": "check",
                    "type": "test_flaky",
                    "config": {"fail_times": 1},
                    "retry": {"max_attempts": 3, "backoff_seconds": 600},
                }
            ],
        }
    )
    deals = [Deal.objects.create(name=f"D{i}") for i in range(4)]
    Event.objects.update(dispatched_at=timezone.now())
    with transaction.atomic():
        for deal in deals[:3]:
            emit("deal.won", {"deal_id": deal.pk})
        emit("deal.lost", {"deal_id": deals[3].pk})
    assert services.outbox_drain(batch_size=25) == 4
    assert all(notes_on(deal) == ["noted"] for deal in deals[:3])
    assert Run.objects.filter(workflow__slug="noted", status="completed").count() == 3
    check = ActionRun.objects.get(run__workflow__slug="flaky")
    assert (check.status, check.attempts, check.error) == ("pending", 1, "flaky failure #1")
    assert check.wake_at is not None and check.wake_at > timezone.now()
    assert Run.objects.count() == 4  # the rolled-back attempt left nothing behind


def test_batches_follow_the_batch_size_and_the_order_of_events(db: Any) -> None:
    note_workflow("order", "deal.won")
    deal = Deal.objects.create(name="Order")
    for _ in range(7):
        emit("deal.won", {"deal_id": deal.pk})
    assert services.outbox_drain(batch_size=3) == 8  # deal.created too
    runs = list(Run.objects.order_by("pk").values_list("event_id", flat=True))
    assert runs == sorted(runs) and len(runs) == 7
    assert not Event.objects.filter(dispatched_at__isnull=True).exists()


@pytest.mark.postgres  # its step's 1/0 is an error (aborting the batch) on PostgreSQL only
def test_a_bad_event_is_put_off_and_the_rest_of_its_batch_goes_on(
    db: Any, client: Any, admin_user: Any
) -> None:
    note_workflow("good", "deal.won")
    poison = {
        "slug": "poison",
        "name": "poison",
        "triggers": [{"event_type": "deal.lost"}],
        "steps": [{"key": "boom", "type": "test_db_error", "config": {"fail": True}}],
    }
    workflow_save(document=poison)
    first, second = Deal.objects.create(name="A"), Deal.objects.create(name="B")
    with transaction.atomic():
        good = emit("deal.won", {"deal_id": first.pk})
        bad = emit("deal.lost", {"deal_id": first.pk})
        emit("deal.won", {"deal_id": second.pk})

    services.outbox_drain()
    assert notes_on(first) == ["noted"] and notes_on(second) == ["noted"]
    bad.refresh_from_db()
    assert bad.dispatched_at is None
    assert bad.dispatch_attempts == 1
    assert "division by zero" in bad.dispatch_error
    assert timezone.now() + timedelta(seconds=2) < bad.dispatch_after
    assert bad.dispatch_after < timezone.now() + timedelta(seconds=6)
    assert not Run.objects.filter(event=bad).exists()  # rolled back with its transaction

    # Operators see it: the monitoring page, /metrics, the admin's "failing" filter.
    client.force_login(admin_user)
    page = client.get("/monitoring/").content.decode()
    assert "1 event failing to dispatch" in page
    with override_settings(METRICS_TOKEN="drain-metrics"):
        metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer drain-metrics")
    assert "flowdesk_outbox_failing 1.0" in metrics.content.decode()
    listing = client.get("/admin/automation/event/", {"dispatch": "failing"}).content.decode()
    assert f"/admin/automation/event/{bad.pk}/change/" in listing
    assert f"/admin/automation/event/{good.pk}/change/" not in listing

    # Put off: neither a drain nor the outbox sweep touches it before its time.
    services.outbox_drain()
    assert services.outbox_redispatch(older_than=timedelta(0)) == 0
    bad.refresh_from_db()
    assert bad.dispatch_attempts == 1

    # Still failing after its time: put off again, for longer (backoff).
    with time_machine.travel(bad.dispatch_after + timedelta(seconds=1)):
        services.outbox_drain()
        bad.refresh_from_db()
        assert bad.dispatch_attempts == 2
        assert bad.dispatch_after > timezone.now() + timedelta(seconds=4)
        due = bad.dispatch_after

    # Fixed (a new version), it is dispatched at its next turn, once.
    workflow_save(
        document={
            **poison,
            "steps": [{"key": "boom", "type": "test_db_error", "config": {"fail": False}}],
        }
    )
    with time_machine.travel(due + timedelta(seconds=1)):
        services.outbox_drain()
    bad.refresh_from_db()
    assert bad.dispatched_at is not None and bad.dispatch_error == ""
    assert Run.objects.get(event=bad).status == "completed"


def test_an_external_step_is_handed_to_another_worker(db: Any) -> None:
    workflow_save(
        document={
            "slug": "ext",
            "name": "ext",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "first",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "first"},
                },
                {"key": "call", "type": "test_external", "config": {"deal_id": "{{deal_id}}"}},
            ],
        }
    )
    deal = Deal.objects.create(name="Ext")
    emit("deal.won", {"deal_id": deal.pk})
    services.outbox_drain()
    run = Run.objects.get()
    # The drain finished what it could inside its transaction and left the external call
    # (an advance_run message) instead of making the rest of its batch wait for it.
    assert run.status == "running"
    assert dict(run.action_runs.values_list("step_key", "status")) == {
        "first": "completed",
        "call": "pending",
    }
    services.run_advance(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "completed"
    assert notes_on(deal) == ["external in " + str(os.getpid()), "first"]


def broker_depth() -> int:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(int(client.llen(queue)) for queue in ("steps", "sweeps"))


@pytest.mark.redis  # reads the queue's depth in Redis
def test_one_drain_message_while_one_is_on_its_way(transactional_db: Any) -> None:
    purge_broker()
    with transaction.atomic():
        for _ in range(5):
            emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 1
    emit("deal.won", {"deal_id": 1})
    emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 1  # the message on its way will see these too
    # A worker taking the message resets the doorbell before it reads the outbox.
    assert services.outbox_drain() == 7
    emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 2
    purge_broker()


def test_two_workers_drain_side_by_side_and_nothing_runs_twice(start_worker: Any) -> None:
    note_workflow("many", "deal.won")
    deals = [Deal.objects.create(name=f"M{i}") for i in range(30)]
    start_worker("a")
    start_worker("b")
    events = 0
    for chunk in range(10):  # 300 events, in transactions of 30, while both drain
        with transaction.atomic():
            for deal in deals:
                emit("deal.won", {"deal_id": deal.pk, "chunk": chunk})
                events += 1
        time.sleep(0.05)
    wait_for(
        lambda: Run.objects.filter(status="completed").count() == events,
        timeout=60,
        message=f"{events} completed runs",
    )
    time.sleep(1)
    assert Run.objects.count() == events
    per_event = Counter(Run.objects.values_list("event_id", flat=True))
    assert set(per_event.values()) == {1}
    assert Note.objects.count() == events
    assert all(len(notes_on(deal)) == 10 for deal in deals)
    assert set(
        Event.objects.filter(type="deal.won").values_list("dispatch_attempts", flat=True)
    ) == {1}


def test_a_slow_batch_hands_its_remaining_runs_to_other_workers(db: Any, settings: Any) -> None:
    settings.FLOWDESK = {**settings.FLOWDESK, "DISPATCH_INLINE_SECONDS": 0.2}
    workflow_save(
        document={
            "slug": "slow",
            "name": "slow",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [{"key": "nap", "type": "test_sleep", "config": {"seconds": 0.3}}],
        }
    )
    deal = Deal.objects.create(name="Slow")
    with transaction.atomic():
        for _ in range(3):
            emit("deal.won", {"deal_id": deal.pk})
    services.outbox_drain()
    runs = list(Run.objects.order_by("pk"))
    # The first run used up the budget; the others were created but left to advance_run.
    assert [run.status for run in runs] == ["completed", "pending", "pending"]
    for run in runs[1:]:
        services.run_advance(run_id=run.pk)
    assert set(Run.objects.values_list("status", flat=True)) == {"completed"}


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing(start_worker: Any) -> None:
    workflow_save(
        document={
            "slug": "nap",
            "name": "nap",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "nap",
                    "type": "test_sleep",
                    "config": {"seconds": 0.4, "deal_id": "{{deal_id}}"},
                }
            ],
        }
    )
    deals = [Deal.objects.create(name=f"K{i}") for i in range(6)]
    Event.objects.update(dispatched_at=timezone.now())  # only the deal.won events below
    doomed = start_worker("doomed", concurrency=1, FLOWDESK_DISPATCH_INLINE_SECONDS="10")
    with transaction.atomic():
        for deal in deals:
            emit("deal.won", {"deal_id": deal.pk})
    time.sleep(1.0)  # the batch (6 x 0.4 s in one transaction) is half done
    assert Run.objects.count() == 0  # nothing committed yet: we are inside the batch
    doomed.kill()
    assert Event.objects.filter(dispatched_at__isnull=True).count() == 6
    assert Note.objects.count() == 0

    start_worker("rescuer")
    # The outbox sweep (beat runs it every 15 s; here with no grace period).
    assert services.outbox_redispatch(older_than=timedelta(0)) == 6
    wait_for(
        lambda: Run.objects.filter(status="completed").count() == 6,
        timeout=30,
        message="the six runs after the crash",
    )
    time.sleep(0.5)
    assert Run.objects.count() == 6
    assert [notes_on(deal) for deal in deals] == [["slept in nap"]] * 6


@pytest.mark.redis  # the doorbell's count and age live in Redis
def test_the_doorbell_counts_events_and_a_drain_waits_only_for_new_ones(
    transactional_db: Any, monkeypatch: Any
) -> None:
    from automation import events

    purge_broker()
    with transaction.atomic():
        for _ in range(5):
            emit("deal.won", {"deal_id": 1})
    emit("deal.won", {"deal_id": 1})
    count, age = events.outbox_doorbell_state()
    assert count == 6 and age is not None and age >= 0
    assert broker_depth() == 1  # one message for all six

    slept: list[float] = []
    monkeypatch.setattr(events.time, "sleep", slept.append)
    # Fewer than a batch: the drain waits (to the window at most) for more to come.
    events.outbox_doorbell_wait(25, 0.1)
    assert slept and all(0 < seconds <= 0.1 for seconds in slept)
    # A batch's worth already rung (a backlog): no wait.
    slept.clear()
    events.outbox_doorbell_wait(5, 0.1)
    assert slept == []

    # A full batch rings for help without counting: the next drain sees only new events.
    services.outbox_drain(batch_size=3)
    events.outbox_ring(0)  # as a full batch does when the drain above is done
    assert events.outbox_doorbell_state()[0] == 0
    slept.clear()
    events.outbox_doorbell_wait(25, 0.1)
    assert slept == []  # a backlog may be behind it: claimed at once
    emit("deal.won", {"deal_id": 1})
    assert events.outbox_doorbell_state()[0] == 1
    purge_broker()
