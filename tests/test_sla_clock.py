"""SLA clocks with time travel: start, pause while blocked, resume, stop; warning, breach and
each escalation level fire exactly once; working hours; configs edited mid-flight.

Given / when / then, through the task services and the sweep, on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group

from automation.models import Event
from tasks_inbox import services
from tasks_inbox.models import Notification, Priority, Queue, SLAEventRecord, Task, TaskHistory
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.sweep import sla_sweep, sla_task_check

pytestmark = [pytest.mark.django_db]

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def team(make_user: Any) -> dict[str, Any]:
    agent = make_user("agent", groups=("Claims",))
    manager = make_user("boss")
    other = make_user("other", groups=("Escalations",))
    claims = Group.objects.get(name="Claims")
    Queue.objects.create(group=claims).managers.add(manager)
    Queue.objects.create(group=Group.objects.get(name="Escalations"), routing="least_busy")
    return {"agent": agent, "manager": manager, "other": other, "queue": claims}


def ladder_config(**overrides: Any) -> Any:
    document = {
        "name": "Claims handling",
        "queue": "Claims",
        "task_type": "claim",
        "target": "1h",
        "warning_after": "45m",
        "escalation_ladder": [
            {"after_percent": 150, "actions": [{"type": "remind"}, {"type": "notify_manager"}]},
            {
                "after": "2h",
                "actions": [
                    {"type": "raise_priority", "to": "urgent"},
                    {"type": "reassign", "queue": "Escalations"},
                ],
            },
        ],
    }
    document.update(overrides)
    return sla_config_save(document=document)


def new_task(team: dict[str, Any], **kwargs: Any) -> Task:
    values = {
        "title": "Water damage #7",
        "task_type": "claim",
        "queue": team["queue"],
        "assignee": team["agent"],
    }
    values.update(kwargs)
    return services.task_create(**values)


def fired(task: Task) -> list[tuple[str, int]]:
    return list(
        SLAEventRecord.objects.filter(task=task)
        .order_by("fired_at", "id")
        .values_list("kind", "level")
    )


def events(task: Task, event_type: str) -> int:
    return Event.objects.filter(type=event_type, entity_type="task", entity_id=str(task.pk)).count()


def sweep_all() -> int:
    total = 0
    while True:
        result = sla_sweep(batch_size=50)
        total += result.fired
        if not result.full:
            return total


def test_clock_starts_with_the_task_and_gets_its_due_times(team: dict[str, Any]) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        config = ladder_config()
        task = new_task(team)
    task.refresh_from_db()
    assert task.sla_config == config
    assert task.sla_started_at == MONDAY_9
    assert task.sla_warning_at == MONDAY_9 + timedelta(minutes=45)
    assert task.sla_due_at == MONDAY_9 + timedelta(hours=1)
    assert task.sla_next_check_at == task.sla_warning_at


def test_warning_breach_and_each_level_fire_exactly_once(team: dict[str, Any]) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        ladder_config()
        task = new_task(team)
        assert sweep_all() == 0

        # when: 44 minutes pass -> nothing; 46 -> the warning, once
        clock.shift(timedelta(minutes=44))
        assert sweep_all() == 0
        clock.shift(timedelta(minutes=2))
        assert sweep_all() == 1
        assert sweep_all() == 0
        assert fired(task) == [("warning", 0)]
        assert events(task, "task.sla_warning") == 1

        # the breach at one hour
        clock.shift(timedelta(minutes=15))
        assert sweep_all() == 1
        assert fired(task) == [("warning", 0), ("breach", 0)]
        assert events(task, "task.sla_breached") == 1
        breached = Event.objects.get(type="task.sla_breached", entity_id=str(task.pk))
        assert breached.payload["sla"]["config"] == "Claims handling"
        assert breached.payload["sla"]["kind"] == "breach"
        assert breached.payload["task"]["id"] == task.pk

        # level 1 at 150% (90 minutes): remind the assignee and tell the manager
        clock.shift(timedelta(minutes=30))
        assert sweep_all() == 1
        assert (
            Notification.objects.filter(
                recipient=team["manager"], message__contains="level 1"
            ).count()
            == 1
        )
        assert (
            Notification.objects.filter(
                recipient=team["agent"], message__contains="level 1"
            ).count()
            == 1
        )

        # level 2 at 2 hours: urgent, reassigned into the Escalations queue
        clock.shift(timedelta(minutes=31))
        assert sweep_all() == 1
        task.refresh_from_db()
        assert task.priority == Priority.URGENT
        assert task.queue.name == "Escalations"
        assert task.assignee == team["other"]
        assert task.sla_next_check_at is None  # nothing left to fire

        # later sweeps fire nothing more
        clock.shift(timedelta(hours=5))
        assert sweep_all() == 0
        assert sla_task_check(task_id=task.pk) == 0
    assert fired(task) == [("warning", 0), ("breach", 0), ("escalation", 1), ("escalation", 2)]
    assert events(task, "task.escalated") == 2
    escalations = TaskHistory.objects.filter(task=task, action="escalate").order_by("id")
    assert [row.input["level"] for row in escalations] == [1, 2]
    assert escalations[1].input["actions"] == [
        "priority urgent",
        "moved to queue Escalations (other)",
    ]


def test_a_late_sweep_fires_every_passed_threshold_in_order(team: dict[str, Any]) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        ladder_config()
        task = new_task(team)
        clock.shift(timedelta(hours=3))
        assert sweep_all() == 4
    assert fired(task) == [("warning", 0), ("breach", 0), ("escalation", 1), ("escalation", 2)]


def test_clock_pauses_while_blocked_resumes_and_stops_on_completion(team: dict[str, Any]) -> None:
    agent = team["agent"]
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        ladder_config()
        task = new_task(team)
        services.task_transition(task_id=task.pk, action="start", actor=agent)

        # 30 minutes of work, then blocked for 3 hours: no warning, no breach
        clock.shift(timedelta(minutes=30))
        services.task_transition(
            task_id=task.pk,
            action="block",
            actor=agent,
            input={"reason": "waiting for the customer"},
        )
        task.refresh_from_db()
        assert task.sla_elapsed_seconds == 30 * 60
        assert task.sla_paused_at == MONDAY_9 + timedelta(minutes=30)
        assert task.sla_due_at is None and task.sla_next_check_at is None
        clock.shift(timedelta(hours=3))
        assert sweep_all() == 0

        # resumed: the due times moved by the 3 hours spent blocked
        services.task_transition(task_id=task.pk, action="resume", actor=agent)
        task.refresh_from_db()
        resumed = MONDAY_9 + timedelta(hours=3, minutes=30)
        assert task.sla_resumed_at == resumed
        assert task.sla_warning_at == resumed + timedelta(minutes=15)
        assert task.sla_due_at == resumed + timedelta(minutes=30)

        # the warning fires 15 minutes after resuming; completed 10 minutes later
        clock.shift(timedelta(minutes=16))
        assert sweep_all() == 1
        clock.shift(timedelta(minutes=10))
        services.task_complete(task_id=task.pk, actor=agent)
        task.refresh_from_db()
        assert task.sla_stopped_at == resumed + timedelta(minutes=26)
        assert task.sla_elapsed_seconds == (30 + 26) * 60
        assert task.sla_met is True
        assert task.sla_next_check_at is None

        clock.shift(timedelta(hours=10))
        assert sweep_all() == 0
    assert fired(task) == [("warning", 0)]


def test_clock_without_pausing_keeps_counting_while_blocked(team: dict[str, Any]) -> None:
    agent = team["agent"]
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        ladder_config(pause_while_blocked=False, escalation_ladder=[])
        task = new_task(team)
        services.task_transition(
            task_id=task.pk, action="block", actor=agent, input={"reason": "parts"}
        )
        clock.shift(timedelta(minutes=61))
        assert sweep_all() == 2
        services.task_transition(task_id=task.pk, action="resume", actor=agent)
        services.task_complete(task_id=task.pk, actor=agent)
    task.refresh_from_db()
    assert task.sla_met is False
    assert task.sla_elapsed_seconds == 61 * 60


def test_clock_starting_in_a_state_waits_for_it(team: dict[str, Any]) -> None:
    agent = team["agent"]
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        ladder_config(start_state="in_progress")
        task = new_task(team)
        task.refresh_from_db()
        assert task.sla_started_at is None and task.sla_due_at is None
        clock.shift(timedelta(hours=5))
        assert sweep_all() == 0
        services.task_transition(task_id=task.pk, action="start", actor=agent)
        task.refresh_from_db()
        assert task.sla_started_at == MONDAY_9 + timedelta(hours=5)
        assert task.sla_due_at == MONDAY_9 + timedelta(hours=6)


def test_a_cancelled_task_stops_the_clock_without_a_verdict(team: dict[str, Any]) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        ladder_config()
        task = new_task(team)
        clock.shift(timedelta(minutes=70))
        services.task_transition(task_id=task.pk, action="cancel", actor=team["manager"])
        assert sweep_all() == 0
    task.refresh_from_db()
    assert task.sla_stopped_at is not None and task.sla_met is None
    assert fired(task) == []  # closed before any sweep looked: nothing fires after the end


def test_working_hours_skip_nights_and_weekends(team: dict[str, Any]) -> None:
    friday_16 = datetime(2026, 3, 6, 16, 0, tzinfo=UTC)  # 17:00 in Paris
    with time_machine.travel(friday_16, tick=False) as clock:
        ladder_config(
            target="4h",
            warning_after="2h",
            escalation_ladder=[],
            working_hours={
                "days": [0, 1, 2, 3, 4],
                "start": "09:00",
                "end": "18:00",
                "time_zone": "Europe/Paris",
            },
        )
        task = new_task(team)
        task.refresh_from_db()
        # Friday 17:00-18:00 Paris counts 1 hour; then Monday from 09:00 Paris (08:00 UTC)
        assert task.sla_warning_at == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
        assert task.sla_due_at == datetime(2026, 3, 9, 11, 0, tzinfo=UTC)

        # the whole weekend passes: nothing fires
        clock.move_to(datetime(2026, 3, 9, 8, 59, tzinfo=UTC))
        assert sweep_all() == 0
        clock.move_to(datetime(2026, 3, 9, 9, 1, tzinfo=UTC))
        assert sweep_all() == 1
        clock.move_to(datetime(2026, 3, 9, 11, 1, tzinfo=UTC))
        assert sweep_all() == 1
    assert fired(task) == [("warning", 0), ("breach", 0)]


def test_working_hours_with_a_pause_over_the_night(team: dict[str, Any]) -> None:
    agent = team["agent"]
    tuesday_8 = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 Paris
    with time_machine.travel(tuesday_8, tick=False) as clock:
        ladder_config(
            target="8h",
            warning_after=None,
            escalation_ladder=[],
            working_hours={
                "days": [0, 1, 2, 3, 4],
                "start": "09:00",
                "end": "17:00",
                "time_zone": "Europe/Paris",
            },
        )
        task = new_task(team)
        clock.shift(timedelta(hours=2))  # 11:00 Paris: 2 hours counted
        services.task_transition(
            task_id=task.pk, action="block", actor=agent, input={"reason": "x"}
        )
        clock.move_to(datetime(2026, 3, 4, 10, 0, tzinfo=UTC))  # Wednesday 11:00 Paris
        services.task_transition(task_id=task.pk, action="resume", actor=agent)
        task.refresh_from_db()
        # 6 hours left: Wednesday 11:00-17:00 Paris
        assert task.sla_elapsed_seconds == 2 * 3600
        assert task.sla_due_at == datetime(2026, 3, 4, 16, 0, tzinfo=UTC)


def test_config_edited_mid_flight_recomputes_open_tasks_from_their_start(
    team: dict[str, Any],
) -> None:
    agent = team["agent"]
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        config = ladder_config(escalation_ladder=[])
        running = new_task(team)
        paused = new_task(team, title="Paused one")
        done = new_task(team, title="Done one")
        services.task_transition(task_id=done.pk, action="start", actor=agent)
        clock.shift(timedelta(minutes=20))
        services.task_transition(
            task_id=paused.pk, action="block", actor=agent, input={"reason": "y"}
        )
        services.task_complete(task_id=done.pk, actor=agent)
        clock.shift(timedelta(minutes=30))  # 50 minutes in: the warning fires
        assert sweep_all() == 1

        # when: the target becomes 3 hours, the warning 2 hours
        document = {
            "name": config.name,
            "queue": "Claims",
            "task_type": "claim",
            "target": "3h",
            "warning_after": "2h",
        }
        sla_config_save(document=document, config=config)

        # then: the open tasks' due times are recomputed from their start
        running.refresh_from_db()
        assert running.sla_due_at == MONDAY_9 + timedelta(hours=3)
        assert running.sla_warning_at == MONDAY_9 + timedelta(hours=2)
        assert running.sla_warned_at is not None  # fired stays fired
        assert running.sla_next_check_at == MONDAY_9 + timedelta(hours=3)
        paused.refresh_from_db()
        assert paused.sla_due_at is None and paused.sla_elapsed_seconds == 20 * 60
        done.refresh_from_db()
        assert done.sla_met is True and done.sla_elapsed_seconds == 20 * 60  # untouched

        clock.shift(timedelta(minutes=71))  # 2 h 01: under the old target it was breached
        assert sweep_all() == 0
        clock.shift(timedelta(hours=1))
        assert sweep_all() == 1

        # a shorter target puts the breach in the past: it fires at the next sweep
        services.task_transition(task_id=paused.pk, action="resume", actor=agent)
        sla_config_save(
            document={**document, "target": "15m", "warning_after": "5m"}, config=config
        )
        paused.refresh_from_db()
        assert paused.sla_next_check_at is not None
        assert paused.sla_next_check_at <= paused.sla_resumed_at
        assert sweep_all() == 2  # its warning and breach
    assert fired(running) == [("warning", 0), ("breach", 0)]
    assert fired(paused) == [("warning", 0), ("breach", 0)]


def test_deactivated_config_fires_nothing_until_reactivated(team: dict[str, Any]) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        config = ladder_config(escalation_ladder=[])
        task = new_task(team)
        document = {
            "name": config.name,
            "queue": "Claims",
            "task_type": "claim",
            "target": "1h",
            "warning_after": "45m",
        }
        sla_config_save(document={**document, "is_active": False}, config=config)
        clock.shift(timedelta(hours=2))
        assert sweep_all() == 0
        assert new_task(team, title="After").sla_config is None
        sla_config_save(document=document, config=config)
        assert sweep_all() == 2
    assert fired(task) == [("warning", 0), ("breach", 0)]


def test_a_fixed_sla_due_time_without_a_config_breaches_once(team: dict[str, Any]) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        task = services.task_create(
            title="One-off", assignee=team["agent"], sla_due_at=MONDAY_9 + timedelta(minutes=10)
        )
        clock.shift(timedelta(minutes=11))
        assert sweep_all() == 1
        assert sweep_all() == 0
        services.task_transition(task_id=task.pk, action="start", actor=team["agent"])
        services.task_complete(task_id=task.pk, actor=team["agent"])
    task.refresh_from_db()
    assert fired(task) == [("breach", 0)]
    assert task.sla_met is False


def test_the_most_specific_config_wins(team: dict[str, Any]) -> None:
    sla_config_save(document={"name": "Queue", "queue": "Claims", "target": "8h"})
    sla_config_save(document={"name": "Type", "task_type": "claim", "target": "6h"})
    sla_config_save(
        document={"name": "Type+prio", "task_type": "claim", "priority": "high", "target": "4h"}
    )
    sla_config_save(
        document={"name": "Queue+type", "queue": "Claims", "task_type": "claim", "target": "2h"}
    )
    sla_config_save(
        document={
            "name": "All three",
            "queue": "Claims",
            "task_type": "claim",
            "priority": "urgent",
            "target": "1h",
        }
    )

    def config_of(**kwargs: Any) -> str | None:
        task = new_task(team, **kwargs)
        return task.sla_config.name if task.sla_config_id else None

    assert config_of(priority="urgent") == "All three"
    assert config_of(priority="high") == "Queue+type"
    assert config_of(queue=None) == "Type"
    assert config_of(queue=None, priority="high") == "Type+prio"
    assert config_of(task_type="other") == "Queue"
    assert config_of(task_type="other", queue=None) is None
