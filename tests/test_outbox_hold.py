"""A worker's drain holding the outbox doorbell under steady traffic: events committed
meanwhile publish no drain message and are claimed by the same drain, a backlog still rings
for help, and whatever way the hold ends, nothing that rang it is left behind."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from automation import events, services
from automation.events import emit
from automation.matcher import current_generation, generation_bump
from automation.models import Event, Run
from automation.services import dispatch
from automation.services.dispatch import DoorbellHold
from automation.tasks import dispatch_pending
from crm.models import Deal
from tests.conftest import notes_on, purge_broker
from tests.test_outbox_drain import broker_depth, note_workflow

pytestmark = pytest.mark.redis  # the doorbell and the broker's queues live in Redis


def undispatched() -> int:
    return Event.objects.filter(type="deal.won", dispatched_at__isnull=True).count()


def test_events_committed_while_a_drain_holds_the_doorbell_are_its_next_batch(
    transactional_db: Any, monkeypatch: Any
) -> None:
    note_workflow("held", "deal.won")
    deal = Deal.objects.create(name="Held")
    emit("deal.won", {"deal_id": deal.pk})
    purge_broker()  # the test is the worker that took the message
    later: list[int] = []
    depths: list[int] = []

    def sleep(seconds: float) -> None:
        # Traffic goes on while the drain waits: two events, one transaction each, the
        # first time it sleeps.
        if not later:
            for index in (1, 2):
                later.append(emit("deal.won", {"deal_id": deal.pk, "n": index}).pk)
            depths.append(broker_depth())

    monkeypatch.setattr(dispatch.time, "sleep", sleep)
    monkeypatch.setattr(events.time, "sleep", sleep)

    assert dispatch_pending() == 4  # deal.created too

    assert depths == [0]  # rung, the doorbell held: no drain message for them
    assert broker_depth() == 0
    assert undispatched() == 0
    assert Run.objects.filter(status="completed").count() == 3
    assert notes_on(deal) == ["noted"] * 3
    # The batches: the first event alone, then the two that rang the held doorbell.
    created = list(Run.objects.order_by("event_id").values_list("created_at", flat=True))
    assert created[0] != created[1] == created[2]
    # Let go when a window brought nothing: the next commit publishes a message again.
    assert events.outbox_doorbell_state()[0] == 0
    emit("deal.won", {"deal_id": deal.pk})
    assert broker_depth() == 1
    purge_broker()


def test_a_full_batch_while_holding_lets_the_doorbell_go_and_rings_for_help(
    transactional_db: Any,
) -> None:
    note_workflow("backlog", "deal.won")
    deal = Deal.objects.create(name="Backlog")
    with transaction.atomic():
        for _ in range(7):
            emit("deal.won", {"deal_id": deal.pk})
    purge_broker()

    drained = services.outbox_drain(batch_size=3, window=0.05, hold_seconds=1.0)
    assert drained == 8  # deal.created too

    # Another worker was asked to help (a message), and nothing was left behind.
    assert broker_depth() >= 1
    assert undispatched() == 0
    assert Run.objects.filter(status="completed").count() == 7
    purge_broker()


def test_the_hold_counts_rings_and_is_let_go_only_when_nothing_rang(
    transactional_db: Any,
) -> None:
    purge_broker()
    hold = DoorbellHold.take()
    assert hold is not None
    emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 0  # counted on the held doorbell
    # Something rang since the last claim: not let go (the drain claims it first).
    assert not hold.release_if_quiet()
    assert hold.wait(25, 0.01) == 1  # and the count starts again for the next claim
    assert hold.wait(25, 0.01) == 0
    assert hold.release_if_quiet()
    emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 1  # let go: the next commit rings again
    purge_broker()


def test_the_hold_reads_the_definitions_generation_with_its_count(
    transactional_db: Any,
) -> None:
    """The claim after a window matches against the generation read with the window's
    count (one round trip for both): a workflow edit published meanwhile is seen."""
    purge_broker()
    hold = DoorbellHold.take()
    assert hold is not None
    before = current_generation()
    assert hold.wait(25, 0.01) == 0
    assert hold.generation == before
    generation_bump(None)  # a workflow edit committed in another process
    hold.wait(25, 0.01)
    assert hold.generation == (before[0], before[1] + 1) == current_generation()
    hold.let_go()


def test_one_drain_holds_the_doorbell_at_a_time(transactional_db: Any) -> None:
    purge_broker()
    first = DoorbellHold.take()
    second = DoorbellHold.take()  # a drain message taken meanwhile: it takes over
    assert first is not None and second is not None
    emit("deal.won", {"deal_id": 1})
    assert first.wait(25, 0.01) == -1  # no longer held: the first drain stops
    assert first.release_if_quiet()  # and leaves the doorbell to the second
    first.let_go()
    emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 0  # still held by the second drain
    assert second.wait(25, 0.01) == 2
    second.let_go()
    emit("deal.won", {"deal_id": 1})
    assert broker_depth() == 1
    purge_broker()


def test_a_drain_whose_held_doorbell_expired_claims_what_rang_it(
    transactional_db: Any, monkeypatch: Any
) -> None:
    note_workflow("expired", "deal.won")
    deal = Deal.objects.create(name="Expired")
    emit("deal.won", {"deal_id": deal.pk})
    purge_broker()
    later: list[int] = []

    def sleep(seconds: float) -> None:
        if not later:  # an event rings the held doorbell, which then expires
            later.append(emit("deal.won", {"deal_id": deal.pk}).pk)
            events.outbox_doorbell_reset()

    monkeypatch.setattr(dispatch.time, "sleep", sleep)

    assert services.outbox_drain(window=0.05, hold_seconds=1.0) == 3  # deal.created too

    assert undispatched() == 0
    assert notes_on(deal) == ["noted"] * 2
    assert broker_depth() == 0
    purge_broker()
