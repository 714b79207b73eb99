"""Consecutive atomic steps of a run execute in one transaction, and nothing else changes:
the order and history of the steps, a failure's record and retry, a crash mid-chain."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from automation import services
from automation.events import event_emit
from automation.models import ActionRun, Event, Run
from automation.tasks import dispatch_pending
from crm.models import Deal
from tests.conftest import notes_on, purge_broker, wait_for
from workflows.services import workflow_save


def note(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "type": "add_note",
        "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": key},
        **extra,
    }


def chain(middle: dict[str, Any] | None = None, slug: str = "chain") -> dict[str, Any]:
    """Note, field update, chained event, a middle step (a validation by default), and a
    note conditioned on the field update."""
    return {
        "slug": slug,
        "name": slug,
        "triggers": [{"event_type": "x.happened"}],
        "steps": [
            note("first"),
            {
                "key": "field",
                "type": "update_field",
                "config": {
                    "entity_type": "deal",
                    "entity_id": "{{deal_id}}",
                    "field": "amount",
                    "value": 250,
                },
            },
            {
                "key": "emit",
                "type": "emit_event",
                "config": {"type": "x.y", "payload": {"deal_id": "{{deal_id}}"}},
            },
            middle
            or {
                "key": "check",
                "type": "validate",
                "config": {
                    "condition": {"field": "deal_id", "operator": "gt", "value": 0},
                    "message": "no deal",
                },
            },
            note(
                "last",
                conditions={"field": "steps.field.changed", "operator": "eq", "value": True},
            ),
        ],
    }


class Counted:
    """Commits and savepoint statements of this process's connection while installed."""

    def __init__(self) -> None:
        self.commits = 0
        self.savepoints = 0

    def wrapper(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "SAVEPOINT" in sql:
            self.savepoints += 1
        return execute(sql, params, many, context)


@pytest.fixture
def counted() -> Iterator[Counted]:
    counts = Counted()
    original = connection._commit

    def commit() -> None:
        counts.commits += 1
        original()

    connection._commit = commit
    try:
        with connection.execute_wrapper(counts.wrapper):
            yield counts
    finally:
        del connection._commit


def emit_undispatched(deal: Deal) -> None:
    """The event in the outbox, as its emitter commits it (its doorbell message dropped:
    the test is the worker)."""
    with transaction.atomic():
        event_emit("x.happened", {"deal_id": deal.pk})
    purge_broker()


def steps_of(run: Run) -> list[tuple[str, str, int]]:
    return list(
        ActionRun.objects.filter(run=run)
        .order_by("position")
        .values_list("step_key", "status", "attempts")
    )


def test_a_five_step_atomic_chain_completes_in_one_delivery_and_one_transaction(
    transactional_db: Any, counted: Counted
) -> None:
    deal = Deal.objects.create(name="Chain", amount=10)
    workflow_save(document=chain())
    emit_undispatched(deal)
    counted.commits = counted.savepoints = 0

    dispatch_pending()  # one delivery of the drain message, as a worker runs it

    run = Run.objects.get(workflow__slug="chain")
    assert run.status == "completed"
    assert steps_of(run) == [
        ("first", "completed", 1),
        ("field", "completed", 1),
        ("emit", "completed", 1),
        ("check", "completed", 1),
        ("last", "completed", 1),
    ]
    rows = list(ActionRun.objects.filter(run=run).order_by("position"))
    for before, after in itertools.pairwise(rows):
        assert before.finished_at is not None and after.started_at is not None
        assert before.finished_at <= after.started_at  # one after the other, in order
    assert rows[1].output is not None and rows[1].output["changed"] is True
    assert rows[-1].output is not None and "note_id" in rows[-1].output
    assert run.finished_at is not None and run.finished_at >= rows[-1].finished_at
    assert notes_on(deal) == ["first", "last"]
    # The batch's transaction (its first step, with no savepoint) and one transaction for the
    # other four, with no savepoint; then (the drain holding the doorbell) the claim of
    # the x.y event the chain emitted, a window later: three commits in all.
    assert counted.commits == 3
    assert not Event.objects.filter(type="x.y", dispatched_at__isnull=True).exists()
    assert counted.savepoints == 0  # a step that raised would have the batch done again


@pytest.mark.parametrize(
    ("middle", "expected"),
    [
        (
            {
                "key": "check",
                "type": "test_flaky",
                "config": {"fail_times": 1},
                "retry": {"max_attempts": 3, "backoff_seconds": 600},
            },
            "retry",
        ),
        (
            {
                "key": "check",
                "type": "validate",
                "config": {
                    "condition": {"field": "deal_id", "operator": "lt", "value": 0},
                    "message": "the deal must be negative",
                },
            },
            "fail",
        ),
    ],
)
def test_a_failing_middle_step_records_its_failure_and_retry_as_before(
    transactional_db: Any, middle: dict[str, Any], expected: str
) -> None:
    deal = Deal.objects.create(name="Chain", amount=10)
    workflow_save(document=chain(middle))
    emit_undispatched(deal)

    dispatch_pending()

    run = Run.objects.get(workflow__slug="chain")
    check = ActionRun.objects.get(run=run, step_key="check")
    # The steps before it committed once each (done again after the rollback that the
    # failure caused, never twice), the failing one carries its attempt and error.
    assert notes_on(deal) == ["first"]
    deal.refresh_from_db()
    assert deal.amount == 250
    assert check.attempts == 1
    if expected == "retry":
        assert steps_of(run) == [
            ("first", "completed", 1),
            ("field", "completed", 1),
            ("emit", "completed", 1),
            ("check", "pending", 1),
            ("last", "pending", 0),
        ]
        assert check.error_code == "FLAKY"
        assert check.error == "flaky failure #1"
        assert check.wake_at is not None
        assert check.wake_at > timezone.now() + timedelta(seconds=60)  # its backoff
        assert run.status == "waiting"
        # Due: the retry succeeds and the run goes on from there.
        ActionRun.objects.filter(pk=check.pk).update(wake_at=timezone.now())
        services.step_execute(action_run_id=check.pk)
        services.run_advance(run_id=run.pk, finished="check")
        run.refresh_from_db()
        assert run.status == "completed"
        assert steps_of(run)[3:] == [("check", "completed", 2), ("last", "completed", 1)]
        assert notes_on(deal) == ["first", "last"]
    else:
        assert steps_of(run) == [
            ("first", "completed", 1),
            ("field", "completed", 1),
            ("emit", "completed", 1),
            ("check", "failed", 1),
            ("last", "cancelled", 0),
        ]
        assert check.error_code == "VALIDATION_FAILED"
        assert run.status == "failed"
        assert run.error_code == "VALIDATION_FAILED"
        assert run.error == "Step 'check' failed: the deal must be negative"
    # The chained event was emitted once (its emitting step's transaction committed once).
    from automation.models import Event

    assert Event.objects.filter(type="x.y").count() == 1


def test_an_infrastructure_error_mid_chain_rolls_the_chain_back_for_the_task_to_retry(
    transactional_db: Any,
) -> None:
    from django.db import DatabaseError

    deal = Deal.objects.create(name="Chain", amount=10)
    workflow_save(
        document=chain({"key": "check", "type": "test_db_error", "config": {"fail": True}})
    )
    emit_undispatched(deal)
    dispatch_pending()  # the first step commits with the batch; the rest goes on after it

    run = Run.objects.get(workflow__slug="chain")
    assert steps_of(run)[:2] == [("first", "completed", 1), ("field", "pending", 0)]
    with pytest.raises(DatabaseError):
        services.run_advance(run_id=run.pk)  # what the advance_run task retries
    assert steps_of(run) == [
        ("first", "completed", 1),
        ("field", "pending", 0),
        ("emit", "pending", 0),
        ("check", "pending", 0),
        ("last", "pending", 0),
    ]
    assert notes_on(deal) == ["first"]


def test_a_worker_killed_mid_chain_loses_no_step_and_doubles_none(start_worker: Any) -> None:
    deal = Deal.objects.create(name="Crash chain", amount=10)
    workflow_save(
        document={
            "slug": "crash-chain",
            "name": "Crash chain",
            "triggers": [{"event_type": "x.happened"}],
            "steps": [
                note("one"),
                note("two"),
                {
                    "key": "slow",
                    "type": "test_sleep",
                    "config": {"seconds": 4, "deal_id": "{{deal_id}}"},
                },
                note("four"),
                note("five"),
            ],
        }
    )
    doomed = start_worker("doomed")
    with transaction.atomic():
        event_emit("x.happened", {"deal_id": deal.pk})
    wait_for(lambda: notes_on(deal) == ["one"], message="the batch's first step")
    time.sleep(1.5)  # inside the chain's transaction: "two" done, "slow" sleeping
    doomed.kill()
    run = Run.objects.get()
    assert run.status == "running"
    # The chain's transaction rolled back whole: "two" is pending again, not lost.
    assert steps_of(run) == [
        ("one", "completed", 1),
        ("two", "pending", 0),
        ("slow", "pending", 0),
        ("four", "pending", 0),
        ("five", "pending", 0),
    ]
    assert notes_on(deal) == ["one"]

    start_worker("rescuer")
    assert services.runs_resume_stale(older_than=timedelta(0)) == 1
    wait_for(
        lambda: Run.objects.get(pk=run.pk).status == "completed",
        timeout=40,
        message="the run to complete after the crash",
    )
    assert notes_on(deal) == ["five", "four", "one", "slept in slow", "two"]
    assert [s[1:] for s in steps_of(run)] == [("completed", 1)] * 5
