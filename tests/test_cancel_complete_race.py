"""Cancelling a run and completing the task it waits on, at the same time, never deadlock.

Both take the same row locks in the same order (the run, then the task, then the waiting
step), so whichever comes second waits for the first and then finds a consistent state:
either the task was completed and the run cancelled after it, or the task was cancelled
with the run (and completing it is refused as an invalid transition).

The first test lines the two up deterministically: a third connection holds the waiting
step's row, cancel starts and waits behind it, then complete starts and waits; the holder
lets go. With the locks taken in opposite orders that is a deadlock every time. The second
races them freely, many times, released together by a barrier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from automation import services
from automation.events import emit
from automation.models import ActionRun, Run
from config.errors import DomainError
from crm.models import Deal
from tasks_inbox.models import Task
from tasks_inbox.services import task_complete, task_transition
from tests.conftest import wait_for
from workflows.services import workflow_save

pytestmark = [pytest.mark.postgres]


def review_workflow() -> None:
    workflow_save(
        document={
            "slug": "review",
            "name": "Review",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "review",
                    "type": "create_task",
                    "config": {
                        "title": "Review {{deal_id}}",
                        "assignee": "agent@example.com",
                        "wait": True,
                    },
                },
                {
                    "key": "after",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "done"},
                },
            ],
        }
    )


def waiting_run(deal: Deal) -> tuple[Run, Task]:
    """A run parked on an open, started task (its event drained in this process)."""
    event = emit("deal.won", {"deal_id": deal.pk})
    services.outbox_drain()
    run = Run.objects.get(event=event)
    task = Task.objects.get(origin_action_run__run=run)
    task_transition(task_id=task.pk, action="start", actor=None)
    run.refresh_from_db()
    assert run.status == "waiting"
    return run, task


class Racer(threading.Thread):
    """Runs ``work`` on a connection of its own; keeps what it returned or raised."""

    def __init__(self, work: Callable[[], Any], start_line: threading.Barrier | None = None):
        super().__init__(daemon=True)
        self.work = work
        self.start_line = start_line
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.start_line is not None:
                self.start_line.wait(10)
            self.work()
        except BaseException as exc:  # kept for the test to judge
            self.error = exc
        finally:
            connections.close_all()


def lock_waiters() -> int:
    """Backends of this database waiting for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def assert_consistent(run: Run, task: Task, cancel: Racer, complete: Racer) -> str:
    """No deadlock, no other error; the run is cancelled, and the task either completed
    before it (its step completed) or was cancelled with it. Returns which happened."""
    for racer in (cancel, complete):
        assert racer.error is None or isinstance(racer.error, DomainError), repr(racer.error)
    assert cancel.error is None, repr(cancel.error)  # the run was waiting: cancel succeeds
    run.refresh_from_db()
    task.refresh_from_db()
    step = ActionRun.objects.get(run=run, step_key="review")
    assert run.status == "cancelled"
    assert not task.is_open
    if complete.error is None:
        assert (task.state, step.status) == ("completed", "completed")
        return "completed, then cancelled"
    assert "cancelled" in str(complete.error) or task.state == "cancelled", complete.error
    assert (task.state, step.status) == ("cancelled", "cancelled")
    return "cancelled"


def test_cancel_and_complete_lined_up_behind_the_step_row_do_not_deadlock(
    transactional_db: Any, make_user: Callable[..., Any]
) -> None:
    agent = make_user("agent")
    review_workflow()
    run, task = waiting_run(Deal.objects.create(name="Lined up"))
    step_id = task.origin_action_run_id

    held, release = threading.Event(), threading.Event()

    def hold_step() -> None:
        with transaction.atomic():
            list(ActionRun.objects.select_for_update().filter(pk=step_id))
            held.set()
            release.wait(30)

    holder = Racer(hold_step)
    holder.start()
    assert held.wait(10)
    cancel = Racer(lambda: services.run_cancel(run_id=run.pk))
    cancel.start()
    wait_for(lambda: lock_waiters() >= 1, timeout=10, message="cancel to wait for a lock")
    complete = Racer(lambda: task_complete(task_id=task.pk, actor=agent))
    complete.start()
    wait_for(lambda: lock_waiters() >= 2, timeout=10, message="complete to wait for a lock")
    release.set()
    for racer in (holder, cancel, complete):
        racer.join(30)
        assert not racer.is_alive()
    assert holder.error is None
    # Cancel was first in line: it cancels the task, and completing it is refused.
    assert assert_consistent(run, task, cancel, complete) == "cancelled"


def test_cancel_and_complete_raced_many_times_never_deadlock(
    transactional_db: Any, make_user: Callable[..., Any]
) -> None:
    agent = make_user("agent")
    review_workflow()
    deal = Deal.objects.create(name="Raced")
    outcomes: dict[str, int] = {}
    for _ in range(12):
        run, task = waiting_run(deal)
        start_line = threading.Barrier(2)
        cancel = Racer(lambda run=run: services.run_cancel(run_id=run.pk), start_line)
        complete = Racer(lambda task=task: task_complete(task_id=task.pk, actor=agent), start_line)
        cancel.start()
        complete.start()
        for racer in (cancel, complete):
            racer.join(30)
            assert not racer.is_alive()
        outcome = assert_consistent(run, task, cancel, complete)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 12, outcomes
