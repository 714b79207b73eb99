"""The SLA sweep under concurrency: sweeps running at the same time (threads with their own
database connections, and two real Celery workers) fire each threshold exactly once; a
broken task is logged and skipped; the due-set query reads the check table's index."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction
from django.db.models import Count
from django.utils import timezone

from automation.models import Event
from tasks_inbox import services
from tasks_inbox.models import Notification, Queue, SLAConfig, SLAEventRecord, Task
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.fire import _Record, records_insert
from tasks_inbox.sla.sweep import (
    LEASE,
    claim_query,
    due_tasks,
    sla_sweep,
    sla_task_check,
)
from tests.conftest import wait_for

SLA_EVENTS = ("task.sla_warning", "task.sla_breached", "task.escalated")


def setup_tasks(make_user: Any, count: int, *, target: str = "1h") -> list[Task]:
    agents = [make_user(f"agent{i}", groups=("Claims",)) for i in range(4)]
    manager = make_user("boss")
    Queue.objects.create(group=Group.objects.get(name="Claims")).managers.add(manager)
    sla_config_save(
        document={
            "name": "Claims",
            "queue": "Claims",
            "target": target,
            "warning_after": "30m" if target == "1h" else None,
            "escalation_ladder": [
                {"after_percent": 100, "actions": [{"type": "remind"}, {"type": "notify_manager"}]}
            ],
        }
    )
    return [
        services.task_create(
            title=f"Claim {n}", queue=Group.objects.get(name="Claims"), assignee=agents[n % 4]
        )
        for n in range(count)
    ]


def assert_fired_once(tasks: list[Task], kinds: int) -> None:
    """Each task has ``kinds`` records (warning, breach, level 1) and one event of each."""
    ids = [t.pk for t in tasks]
    per_task = dict(
        SLAEventRecord.objects.filter(task_id__in=ids)
        .values_list("task_id")
        .annotate(n=Count("id"))
    )
    assert per_task == {pk: kinds for pk in ids}
    for event_type in SLA_EVENTS:
        emitted = dict(
            Event.objects.filter(type=event_type, entity_type="task")
            .values_list("entity_id")
            .annotate(n=Count("id"))
        )
        assert emitted == {str(pk): 1 for pk in ids}, event_type


def run_threads(work: Any, count: int) -> list[BaseException]:
    """Run ``work(index)`` in ``count`` threads started together, each on its own database
    connection (closed at the end)."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_fire_each_threshold_once(make_user: Any) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = setup_tasks(make_user, 120)
        clock.shift(timedelta(hours=2))  # warning, breach and level 1 are all due

        fired: list[int] = []

        def sweep(index: int) -> None:
            while True:
                result = sla_sweep(batch_size=7)
                fired.append(result.fired)
                if not result.claimed:
                    return

        assert run_threads(sweep, 4) == []
    assert sum(fired) == 3 * 120
    assert_fired_once(tasks, 3)
    manager_notes = Notification.objects.filter(recipient__username="boss").count()
    assert manager_notes == 120  # level 1's notify_manager, once per task
    agent_notes = Notification.objects.filter(recipient__username__startswith="agent")
    # per task: "new task", the warning, the breach and level 1's reminder
    assert agent_notes.count() == 4 * 120
    assert not due_tasks(timezone.now() + timedelta(days=1)).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_full_batch_starts_the_next_sweep_before_it_is_checked(make_user: Any) -> None:
    """``on_full`` runs once the full batch is claimed and before it is checked: a sweep
    started there (another process's, here a thread's own connection) takes the next due
    tasks, not this batch's (locked), and both batches fire once."""
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = setup_tasks(make_user, 9)
        clock.shift(timedelta(hours=2))
        inner: list[Any] = []

        def next_sweep() -> None:
            assert not SLAEventRecord.objects.exists()  # nothing checked yet
            errors = run_threads(lambda index: inner.append(sla_sweep(batch_size=5)), 1)
            assert errors == []

        outer = sla_sweep(batch_size=5, on_full=next_sweep)
        assert sla_sweep(batch_size=5, on_full=next_sweep).claimed == 0  # nothing left
    assert (outer.claimed, outer.fired) == (5, 15)
    assert len(inner) == 1 and (inner[0].claimed, inner[0].fired) == (4, 12)  # not full
    assert_fired_once(tasks, 3)


@pytest.mark.django_db
def test_a_next_sweep_that_cannot_be_enqueued_leaves_the_batch_alone(
    make_user: Any, caplog: Any
) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = setup_tasks(make_user, 3)
        clock.shift(timedelta(hours=2))

        def broker_down() -> None:
            raise ConnectionError("the broker is down")

        result = sla_sweep(batch_size=3, on_full=broker_down)
    assert (result.claimed, result.fired, result.failed) == (3, 9, 0)
    assert "the next SLA sweep could not be enqueued" in caplog.text
    assert "one by one" not in caplog.text
    assert_fired_once(tasks, 3)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_checks_racing_on_the_same_tasks_fire_once(make_user: Any) -> None:
    """Even when two processes check the same tasks at once (a claim whose lease ran out
    while its sweep was still working), the row lock and the unique record make each
    threshold fire once."""
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = setup_tasks(make_user, 60)
        clock.shift(timedelta(hours=2))
        ids = [t.pk for t in tasks]
        counts = [0, 0, 0, 0]

        def check_all(index: int) -> None:
            order = ids if index % 2 == 0 else list(reversed(ids))
            for task_id in order:
                counts[index] += sla_task_check(task_id=task_id)

        assert run_threads(check_all, 4) == []
    assert sum(counts) == 3 * 60
    assert_fired_once(tasks, 3)


@pytest.mark.django_db
def test_the_record_insert_wins_once(make_user: Any) -> None:
    (task,) = setup_tasks(make_user, 1)
    now = timezone.now()
    breach, warning = (task.pk, "breach", 0), (task.pk, "warning", 0)
    with transaction.atomic():
        first = [_Record(breach, task.sla_config_id, now, {"first": True})]
        assert records_insert(first, now) == {breach}
        again = [
            _Record(breach, task.sla_config_id, now, {"second": True}),
            _Record(warning, task.sla_config_id, now, {}),
        ]
        assert records_insert(again, now) == {warning}  # only the new one is returned
    assert SLAEventRecord.objects.get(task=task, kind="breach").details == {"first": True}


@pytest.mark.django_db
def test_a_broken_task_is_logged_and_skipped(make_user: Any, caplog: Any) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = setup_tasks(make_user, 5)
        broken_config = sla_config_save(
            document={"name": "Broken", "task_type": "fragile", "target": "1h"}
        )
        broken = services.task_create(
            title="Fragile", task_type="fragile", assignee=tasks[0].assignee
        )
        # a config damaged behind the services' back (a bad manual SQL fix, say)
        SLAConfig.objects.filter(pk=broken_config.pk).update(escalation_ladder=["not a level"])
        clock.shift(timedelta(hours=2))
        result = sla_sweep(batch_size=100)
    assert result.claimed == 6 and result.failed == 1 and result.fired == 15
    assert "SLA check of task" in caplog.text
    broken.refresh_from_db()
    assert broken.sla_next_check_at == start + timedelta(hours=2) + LEASE  # retried later
    assert not SLAEventRecord.objects.filter(task=broken).exists()
    assert_fired_once(tasks, 3)


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_due_set_query_reads_the_check_tables_index(make_user: Any) -> None:
    setup_tasks(make_user, 3)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned
        plan = claim_query(timezone.now(), 500).explain()
    assert "sla_check_due" in plan, plan


def test_the_sweep_is_on_the_beat_schedule_and_the_sweeps_queue() -> None:
    from django.conf import settings

    from config.celery import app
    from tasks_inbox.tasks import sweep_sla

    entry = settings.CELERY_BEAT_SCHEDULE["sla-sweep"]
    assert entry["task"] == sweep_sla.name == "flowdesk.sweep.sla"
    assert entry["schedule"] == timedelta(minutes=1)
    assert app.amqp.router.route({}, sweep_sla.name)["queue"].name == "sweeps"


@pytest.mark.worker
def test_two_workers_sweeping_at_once_notify_once(make_user: Any, start_worker: Any) -> None:
    """Two real ``celery worker`` processes each run the sweep task (several messages, small
    batches, re-enqueued while full) over the same due tasks."""
    from tasks_inbox.tasks import sweep_sla

    with time_machine.travel(timezone.now() - timedelta(hours=3), tick=True):
        tasks = setup_tasks(make_user, 80)  # created three hours ago: all thresholds due
    start_worker("sla-a", concurrency=2)
    start_worker("sla-b", concurrency=2)
    for _ in range(6):
        sweep_sla.delay(5)
    wait_for(
        lambda: SLAEventRecord.objects.count() == 3 * 80 and not due_tasks(timezone.now()).exists(),
        timeout=90,
        message="every threshold recorded",
    )
    wait_for(
        lambda: Notification.objects.filter(recipient__username="boss").count() >= 80,
        timeout=30,
        message="manager notifications",
    )
    assert_fired_once(tasks, 3)
    assert Notification.objects.filter(recipient__username="boss").count() == 80
