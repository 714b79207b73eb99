"""Routing: to a named user, or into a queue where the least busy active member gets it
(ties to whoever was assigned least recently), or left for members to claim."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from tasks_inbox import services
from tasks_inbox.models import Queue, Task

pytestmark = pytest.mark.django_db


def test_least_busy_routing_spreads_100_tasks_evenly(make_user: Any) -> None:
    members = [make_user(f"m{i}", groups=("Support",)) for i in range(4)]
    make_user("outsider", groups=("Other",))
    queue = Group.objects.get(name="Support")
    for n in range(100):
        services.task_create(title=f"Ticket {n}", queue=queue)
    counts = Counter(Task.objects.values_list("assignee__username", flat=True))
    assert set(counts) == {m.username for m in members}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sorted(counts.values()) == [25, 25, 25, 25]


def test_the_member_with_fewest_open_tasks_gets_the_next(make_user: Any) -> None:
    busy = make_user("busy", groups=("Q",))
    make_user("idle", groups=("Q",))
    queue = Group.objects.get(name="Q")
    for n in range(3):
        services.task_create(title=f"Mine {n}", assignee=busy)
    routed = [services.task_create(title=f"T{n}", queue=queue).assignee for n in range(4)]
    # idle catches up to 3 open tasks, then the two alternate
    assert [u.username for u in routed] == ["idle", "idle", "idle", "busy"]


def test_closed_tasks_do_not_count_and_ties_go_to_the_least_recently_assigned(
    make_user: Any,
) -> None:
    first, second = make_user("first", groups=("Q",)), make_user("second", groups=("Q",))
    queue = Group.objects.get(name="Q")
    done = services.task_create(title="Done", assignee=first)
    services.task_transition(task_id=done.pk, action="cancel", actor=first)
    # both have 0 open tasks; 'second' was never assigned, so it goes first
    assert services.task_create(title="A", queue=queue).assignee == second
    assert services.task_create(title="B", queue=queue).assignee == first
    assert services.task_create(title="C", queue=queue).assignee == second


def test_inactive_members_get_nothing(make_user: Any) -> None:
    away = make_user("away", groups=("Q",))
    away.is_active = False
    away.save()
    here = make_user("here", groups=("Q",))
    queue = Group.objects.get(name="Q")
    assert {services.task_create(title=f"T{n}", queue=queue).assignee for n in range(3)} == {here}


def test_claim_queues_and_empty_queues_leave_the_task_claimable(make_user: Any) -> None:
    make_user("member", groups=("Claimers",))
    claimers = Group.objects.get(name="Claimers")
    Queue.objects.create(group=claimers, routing="claim")
    empty = Group.objects.create(name="Nobody")
    assert services.task_create(title="Claim me", queue=claimers).assignee is None
    assert services.task_create(title="No one", queue=empty).assignee is None
    forced = services.task_create(title="Routed anyway", queue=claimers, routing="least_busy")
    assert forced.assignee.username == "member"


def test_assignment_notifies_the_assignee(make_user: Any) -> None:
    user = make_user("notified")
    task = services.task_create(title="Heads up", assignee=user)
    note = user.notifications.get()
    assert note.message == "New task for you: Heads up"
    assert note.link == f"/inbox/tasks/{task.pk}/"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_routing_into_one_queue_stays_even(make_user: Any) -> None:
    """Tasks routed at the same time from separate connections are counted one after the
    other (the queue's row is locked while routing)."""
    for i in range(4):
        make_user(f"c{i}", groups=("Busy",))
    queue_id = Group.objects.get(name="Busy").pk

    def create(n: int) -> None:
        try:
            services.task_create(title=f"Concurrent {n}", queue=Group.objects.get(pk=queue_id))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(40)))
    counts = Counter(Task.objects.values_list("assignee__username", flat=True))
    assert sorted(counts.values()) == [10, 10, 10, 10]
