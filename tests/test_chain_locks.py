"""Two workers on one run: the run's lock serializes their advances, so the steps a chain
makes ready in its own transaction (executed without taking their rows' locks) cannot be
executed by the other; a step whose row another worker holds is left to it."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from django.db import connection, transaction

from automation import services
from automation.events import event_emit
from automation.models import ActionRun, Run
from crm.models import Deal
from tests.conftest import notes_on, purge_broker
from workflows.services import workflow_save


def sleep_step(key: str, seconds: float) -> dict[str, Any]:
    return {
        "key": key,
        "type": "test_sleep",
        "config": {"seconds": seconds, "deal_id": "{{deal_id}}"},
    }


def created_run(deal: Deal, steps: list[dict[str, Any]]) -> int:
    """A run of a workflow of ``steps`` for ``deal``, created and not advanced."""
    workflow_save(
        document={
            "slug": "locks",
            "name": "locks",
            "triggers": [{"event_type": "x.happened"}],
            "steps": steps,
        }
    )
    event = event_emit("x.happened", {"deal_id": deal.pk})
    purge_broker()  # the test is the worker
    [run_id] = services.event_dispatch(event_id=event.pk, advance=False)
    return run_id


def attempts(run_id: int) -> dict[str, tuple[str, int]]:
    return {
        key: (status, tries)
        for key, status, tries in ActionRun.objects.filter(run_id=run_id).values_list(
            "step_key", "status", "attempts"
        )
    }


def test_two_workers_advancing_one_run_execute_each_step_once(transactional_db: Any) -> None:
    deal = Deal.objects.create(name="Locks")
    run_id = created_run(
        deal, [sleep_step("first", 0.3), sleep_step("second", 0.2), sleep_step("third", 0.1)]
    )
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(10)
            services.run_advance(run_id=run_id)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert Run.objects.get(pk=run_id).status == "completed"
    # One of them ran the chain (the second and third steps made ready in its transaction,
    # executed without their rows' locks); the other waited for the run's lock and found
    # nothing left to do.
    assert attempts(run_id) == {
        "first": ("completed", 1),
        "second": ("completed", 1),
        "third": ("completed", 1),
    }
    assert Counter(notes_on(deal)) == Counter(
        ["slept in first", "slept in second", "slept in third"]
    )


def test_a_step_whose_row_another_worker_holds_is_left_to_it(transactional_db: Any) -> None:
    deal = Deal.objects.create(name="Held step")
    run_id = created_run(deal, [sleep_step("first", 0.0), sleep_step("second", 0.0)])
    first = ActionRun.objects.get(run_id=run_id, step_key="first")
    holding = threading.Event()
    done = threading.Event()

    def other_worker() -> None:  # executing the step: its row locked in its transaction
        try:
            with transaction.atomic():
                ActionRun.objects.select_for_update().get(pk=first.pk)
                holding.set()
                done.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(10)
        services.run_advance(run_id=run_id)
        assert attempts(run_id) == {"first": ("pending", 0), "second": ("pending", 0)}
        assert notes_on(deal) == []
    finally:
        done.set()
        thread.join(10)

    services.run_advance(run_id=run_id)
    assert attempts(run_id) == {"first": ("completed", 1), "second": ("completed", 1)}
    assert Counter(notes_on(deal)) == Counter(["slept in first", "slept in second"])
