"""A batch's runs: their first steps share one savepoint, and their chains go on after the
batch's commit in one transaction for all of them; a failure is still recorded per step and
costs no other run anything."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from automation.events import event_emit
from automation.models import ActionRun, Event, Run
from automation.tasks import dispatch_pending
from crm.models import Deal
from tests import test_chain_transactions
from tests.conftest import notes_on, purge_broker
from tests.test_chain_transactions import Counted, chain, note
from workflows.services import workflow_save

counted = test_chain_transactions.counted  # the fixture: commits and savepoint statements


def make_deals(count: int) -> list[Deal]:
    return [Deal.objects.create(name=f"Batch {index}", amount=10) for index in range(count)]


def emit_for(deals: list[Deal]) -> None:
    """An ``x.happened`` event per deal, committed together (the test is the worker: their
    doorbell message is dropped)."""
    with transaction.atomic():
        for deal in deals:
            event_emit("x.happened", {"deal_id": deal.pk})
    purge_broker()


def steps_of(deal: Deal) -> list[tuple[str, str, int]]:
    run = Run.objects.get(event__payload__deal_id=deal.pk, workflow__slug="chain")
    return list(
        ActionRun.objects.filter(run=run)
        .order_by("position")
        .values_list("step_key", "status", "attempts")
    )


def test_a_batchs_chains_go_on_in_one_transaction_after_its_commit(
    transactional_db: Any, counted: Counted
) -> None:
    deals = make_deals(3)
    workflow_save(document=chain())
    emit_for(deals)
    counted.commits = counted.savepoints = 0

    dispatch_pending()

    for deal in deals:
        assert [s[1:] for s in steps_of(deal)] == [("completed", 1)] * 5
        assert notes_on(deal) == ["first", "last"]
    assert set(Run.objects.values_list("status", flat=True)) == {"completed"}
    # The batch (its runs' first steps, with no savepoint), one transaction for the three
    # runs' other steps, and (the drain holding the doorbell) the claim of the x.y events
    # their chains emitted, a window later.
    assert counted.commits == 3
    assert counted.savepoints == 0
    assert Event.objects.filter(type="x.y").count() == 3
    assert not Event.objects.filter(type="x.y", dispatched_at__isnull=True).exists()


def test_a_first_step_failing_in_a_batch_is_recorded_and_the_other_runs_go_on(
    transactional_db: Any,
) -> None:
    deals = make_deals(3)
    bad = max(deal.pk for deal in deals)
    workflow_save(
        document={
            **chain(),
            "steps": [
                {
                    "key": "gate",
                    "type": "validate",
                    "config": {
                        "condition": {"field": "deal_id", "operator": "lt", "value": bad},
                        "message": "the last deal is refused",
                    },
                },
                note("after"),
            ],
        }
    )
    emit_for(deals)

    dispatch_pending()

    for deal in deals:
        if deal.pk == bad:
            assert steps_of(deal) == [("gate", "failed", 1), ("after", "cancelled", 0)]
            assert notes_on(deal) == []
        else:
            assert steps_of(deal) == [("gate", "completed", 1), ("after", "completed", 1)]
            assert notes_on(deal) == ["after"]
    failed = Run.objects.get(event__payload__deal_id=bad)
    assert failed.status == "failed"
    assert failed.error_code == "VALIDATION_FAILED"


def test_a_middle_step_failing_in_a_group_costs_only_its_own_run(transactional_db: Any) -> None:
    deals = make_deals(3)
    bad = max(deal.pk for deal in deals)
    workflow_save(
        document=chain(
            {
                "key": "check",
                "type": "validate",
                "config": {
                    "condition": {"field": "deal_id", "operator": "lt", "value": bad},
                    "message": "the last deal is refused",
                },
            }
        )
    )
    emit_for(deals)

    dispatch_pending()

    for deal in deals:
        if deal.pk == bad:
            assert steps_of(deal) == [
                ("first", "completed", 1),
                ("field", "completed", 1),
                ("emit", "completed", 1),
                ("check", "failed", 1),
                ("last", "cancelled", 0),
            ]
            assert notes_on(deal) == ["first"]
        else:
            assert [s[1:] for s in steps_of(deal)] == [("completed", 1)] * 5
            assert notes_on(deal) == ["first", "last"]
        deal.refresh_from_db()
        assert deal.amount == 250
    # Each run's chained event committed once, the failing run's included.
    assert Event.objects.filter(type="x.y").count() == 3
