"""The SLA sweep's due set (``SLACheck``) follows every task's ``sla_next_check_at``,
whoever writes it: the task services (create, block, resume, complete), the sweep, a bulk
or raw SQL update, a deletion. On PostgreSQL, where triggers keep it; the sweep's own
update of a task is then a HOT one (no indexed column of the task table moves)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection

from tasks_inbox import services
from tasks_inbox.models import Queue, SLACheck, Task
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.sweep import sla_sweep

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def checks() -> dict[int, datetime]:
    return dict(SLACheck.objects.values_list("task_id", "next_check_at"))


def mirrored() -> dict[int, datetime]:
    """What the check table must hold: the open tasks with a next check, and their time."""
    return dict(
        Task.objects.filter(is_open=True, sla_next_check_at__isnull=False).values_list(
            "pk", "sla_next_check_at"
        )
    )


@pytest.fixture
def agent(make_user: Any) -> Any:
    user = make_user("agent", groups=("Claims",))
    Queue.objects.create(group=Group.objects.get(name="Claims"))
    sla_config_save(
        document={"name": "Claims", "queue": "Claims", "target": "1h", "warning_after": "45m"}
    )
    return user


def new_task(agent: Any, title: str = "Water damage") -> Task:
    return services.task_create(title=title, queue=Group.objects.get(name="Claims"), assignee=agent)


def test_the_services_move_the_check_row_with_the_clock(agent: Any) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        task = new_task(agent)
        assert checks() == {task.pk: MONDAY_9 + timedelta(minutes=45)}  # the warning

        services.task_transition(task_id=task.pk, action="start", actor=agent)
        clock.shift(timedelta(minutes=10))
        services.task_transition(
            task_id=task.pk, action="block", actor=agent, input={"reason": "customer"}
        )
        assert checks() == {}  # a paused clock has nothing due

        clock.shift(timedelta(hours=1))
        services.task_transition(task_id=task.pk, action="resume", actor=agent)
        resumed = MONDAY_9 + timedelta(minutes=70)
        assert checks() == {task.pk: resumed + timedelta(minutes=35)}

        clock.shift(timedelta(minutes=40))
        assert sla_sweep(batch_size=10).fired == 1  # the warning; the breach is next
        assert checks() == {task.pk: resumed + timedelta(minutes=50)} == mirrored()

        services.task_complete(task_id=task.pk, actor=agent)
        assert checks() == {}


def test_bulk_and_raw_updates_and_deletions_keep_the_check_table(agent: Any) -> None:
    tasks = [new_task(agent, f"Claim {n}") for n in range(4)]
    assert checks() == mirrored() and len(checks()) == 4

    later = datetime(2030, 1, 1, tzinfo=UTC)
    Task.objects.filter(pk=tasks[0].pk).update(sla_next_check_at=later)
    Task.objects.filter(pk=tasks[1].pk).update(sla_next_check_at=None)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tasks_inbox_task SET is_open = false WHERE id = %s", [tasks[2].pk])
    Task.objects.filter(pk=tasks[3].pk).update(title="Renamed")  # not the clock
    assert checks() == mirrored() == {tasks[0].pk: later, tasks[3].pk: tasks[3].sla_next_check_at}

    Task.objects.filter(pk=tasks[2].pk).update(is_open=True)  # reopened by hand
    assert tasks[2].pk in checks() and checks() == mirrored()

    Task.objects.filter(pk__in=[tasks[0].pk, tasks[2].pk]).delete()
    assert checks() == mirrored() == {tasks[3].pk: tasks[3].sla_next_check_at}


def test_the_sweeps_update_of_a_task_stays_on_its_page(agent: Any) -> None:
    """With room on the page (the table's fillfactor) and no indexed column moved, the
    sweep's update of a task is a heap-only tuple: no new entry in the task's indexes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [Task._meta.db_table])
        assert cursor.fetchone()[0] == ["fillfactor=85"]
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        new_task(agent)
        clock.shift(timedelta(minutes=50))
        before = updates()
        assert sla_sweep(batch_size=10).fired == 1
        after = updates()
    # one more update of the task table this transaction, and it was a heap-only one
    assert after[0] - before[0] == 1 and after[1] - before[1] == 1
    assert checks() == mirrored()


def updates() -> tuple[int, int]:
    """This transaction's updates of the task table so far: (all, heap-only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
            [Task._meta.db_table],
        )
        return cursor.fetchone()
