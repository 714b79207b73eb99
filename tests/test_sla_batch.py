"""The SLA sweep's batch path: one batch of tasks under different rules fired with a fixed
number of statements; two sweeps over the same due set, and a batch that dies half-way,
fire each record, event and notification once; a ladder whose target queue or user is gone
is reported in the event, and the rest of the batch goes on."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation.models import Event
from tasks_inbox import services
from tasks_inbox.models import (
    Notification,
    Priority,
    Queue,
    SLAEventRecord,
    Task,
    TaskHistory,
)
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.fire import fire_batch
from tasks_inbox.sla.sweep import claim_query, due_tasks, sla_sweep
from tests.test_sla_sweep import run_threads

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def team(make_user: Any) -> dict[str, Any]:
    agents = [make_user(f"agent{n}", groups=("Claims",)) for n in range(2)]
    boss = make_user("boss")
    Queue.objects.create(group=Group.objects.get(name="Claims"), routing="claim").managers.add(boss)
    seniors = [make_user(f"senior{n}", groups=("Escalations",)) for n in range(2)]
    chief = make_user("chief")
    Queue.objects.create(
        group=Group.objects.get(name="Escalations"), routing="least_busy"
    ).managers.add(chief)
    lead = make_user("lead")
    make_user("spare", groups=("Doomed",))
    sla_config_save(
        document={
            "name": "Claims",
            "queue": "Claims",
            "task_type": "claim",
            "target": "1h",
            "warning_after": "30m",
            "escalation_ladder": [
                {"after_percent": 100, "actions": [{"type": "remind"}, {"type": "notify_manager"}]},
                {
                    "after_percent": 150,
                    "actions": [
                        {"type": "raise_priority", "to": "urgent"},
                        {"type": "reassign", "queue": "Escalations"},
                        {"type": "notify_manager", "message": "Escalated to you"},
                    ],
                },
            ],
        }
    )
    sla_config_save(
        document={
            "name": "Bugs",
            "task_type": "bug",
            "target": "1h",
            "escalation_ladder": [
                {
                    "after_percent": 100,
                    "actions": [{"type": "raise_priority"}, {"type": "reassign", "user": "lead"}],
                }
            ],
        }
    )
    sla_config_save(document={"name": "Chores", "task_type": "chore", "target": "1h"})
    sla_config_save(
        document={
            "name": "Doomed",
            "task_type": "doomed",
            "target": "1h",
            "escalation_ladder": [
                {
                    "after_percent": 100,
                    "actions": [{"type": "reassign", "queue": "Doomed"}, {"type": "remind"}],
                }
            ],
        }
    )
    return {"agents": agents, "boss": boss, "seniors": seniors, "chief": chief, "lead": lead}


def create(
    team: dict[str, Any], count: int, task_type: str, *, assigned: bool = True, **kwargs: Any
) -> list[Task]:
    return [
        services.task_create(
            title=f"{task_type} {n}",
            task_type=task_type,
            queue=Group.objects.get(name="Claims"),
            assignee=team["agents"][n % 2] if assigned else None,
            **kwargs,
        )
        for n in range(count)
    ]


def mixed(team: dict[str, Any], count: int) -> dict[str, list[Task]]:
    now = timezone.now()
    return {
        "claim": create(team, count, "claim"),
        "bug": create(team, count, "bug"),
        "chore": create(team, count, "chore"),
        # no config, a fixed due time, unassigned: the breach tells the queue's managers
        "fixed": create(
            team, count, "fixed", assigned=False, sla_due_at=now + timedelta(minutes=30)
        ),
    }


def records(tasks: list[Task]) -> dict[int, list[tuple[str, int]]]:
    found: dict[int, list[tuple[str, int]]] = {t.pk: [] for t in tasks}
    for task_id, kind, level in (
        SLAEventRecord.objects.filter(task__in=tasks)
        .order_by("task_id", "kind", "level")
        .values_list("task_id", "kind", "level")
    ):
        found[task_id].append((kind, level))
    return found


def events_per_task(event_type: str) -> Counter[str]:
    return Counter(
        dict(
            Event.objects.filter(type=event_type, entity_type="task")
            .values_list("entity_id")
            .annotate(n=Count("id"))
        )
    )


def notes(username: str) -> int:
    return Notification.objects.filter(recipient__username=username).count()


@pytest.mark.django_db(transaction=True)
def test_a_batch_with_mixed_rules_fires_every_rule(team: dict[str, Any]) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = mixed(team, 4)
        agent_notes = sum(notes(a.username) for a in team["agents"])  # "new task" ones
        clock.shift(timedelta(hours=2))
        result = sla_sweep(batch_size=100)
    assert (result.claimed, result.failed, result.skipped) == (16, 0, 0)
    assert result.fired == 4 * 4 + 4 * 2 + 4 + 4
    claim_levels = [("breach", 0), ("escalation", 1), ("escalation", 2), ("warning", 0)]
    assert set(map(tuple, records(tasks["claim"]).values())) == {tuple(claim_levels)}
    assert set(map(tuple, records(tasks["bug"]).values())) == {(("breach", 0), ("escalation", 1))}
    assert set(map(tuple, records(tasks["chore"] + tasks["fixed"]).values())) == {(("breach", 0),)}
    everyone = [t.pk for group in tasks.values() for t in group]
    assert events_per_task("task.sla_breached") == Counter({str(pk): 1 for pk in everyone})
    assert events_per_task("task.sla_warning") == Counter({str(t.pk): 1 for t in tasks["claim"]})
    assert events_per_task("task.escalated") == Counter(
        {**{str(t.pk): 2 for t in tasks["claim"]}, **{str(t.pk): 1 for t in tasks["bug"]}}
    )

    # claims: level 2 raised them to urgent and routed them into Escalations, least busy first
    claims = Task.objects.filter(pk__in=[t.pk for t in tasks["claim"]])
    assert {t.priority for t in claims} == {Priority.URGENT}
    assert {t.queue.name for t in claims} == {"Escalations"}
    assert Counter(t.assignee.username for t in claims) == {"senior0": 2, "senior1": 2}
    history = TaskHistory.objects.filter(task__in=claims, action="escalate")
    assert history.count() == 8
    level2 = Event.objects.filter(
        type="task.escalated", entity_id=str(tasks["claim"][0].pk), payload__escalation__level=2
    ).get()
    assert level2.payload["escalation"]["from_priority"] == "medium"
    assert level2.payload["escalation"]["queue"] == "Escalations"
    assert level2.payload["queue"]["name"] == "Escalations"  # the task as level 2 left it
    # level 1 told the Claims manager; level 2, run after the move, the Escalations one
    assert Notification.objects.filter(recipient=team["chief"], message="Escalated to you").count()
    assert notes("chief") == 4
    # bugs: one step up (medium -> high), reassigned to the lead
    bugs = Task.objects.filter(pk__in=[t.pk for t in tasks["bug"]])
    assert {(t.priority, t.assignee.username) for t in bugs} == {(Priority.HIGH, "lead")}
    # the fixed-due tasks have no assignee: their breach went to the Claims manager
    assert notes("boss") == 4 + 4  # claims' level 1 + the fixed tasks' breaches
    # agents: claims' warning, breach and level 1 reminder; bugs' and chores' breach
    assert sum(notes(a.username) for a in team["agents"]) - agent_notes == 4 * 3 + 4 + 4
    assert not due_tasks(timezone.now() + timedelta(minutes=30)).exists()
    assert all(t.sla_next_check_at is None for t in Task.objects.filter(task_type="chore"))


@pytest.mark.django_db(transaction=True)
def test_a_batch_costs_the_same_statements_whatever_its_size(team: dict[str, Any]) -> None:
    start = timezone.now()
    counts = []
    with time_machine.travel(start, tick=False) as clock:
        for size in (1, 5):
            mixed(team, size)
            clock.shift(timedelta(hours=2))
            with CaptureQueriesContext(connection) as queries:
                result = sla_sweep(batch_size=100)
            assert result.claimed == 4 * size and not result.failed
            counts.append(len(queries))
    assert counts[0] == counts[1], counts


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_over_the_same_due_set_fire_once(team: dict[str, Any]) -> None:
    """Two sweeps claim the same due set at once (the second one's claim found the first's
    lease expired, say) and check it together: each record, event and notification once."""
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = mixed(team, 15)
        ids = [t.pk for group in tasks.values() for t in group]
        before = Counter(Notification.objects.values_list("recipient__username", flat=True))
        clock.shift(timedelta(hours=2))
        fired: list[int] = []

        def check(index: int) -> None:
            if index < 2:  # straight to the same batch, in opposite orders
                with transaction.atomic():
                    fired.append(fire_batch(ids if index else ids[::-1]).fired)
            else:  # the sweep, claiming as it goes
                while (result := sla_sweep(batch_size=9)).claimed:
                    fired.append(result.fired)

        assert run_threads(check, 4) == []
    assert sum(fired) == 15 * (4 + 2 + 1 + 1)
    per_task = Counter(SLAEventRecord.objects.filter(task_id__in=ids).values_list("task_id"))
    assert len(per_task) == len(ids)
    assert SLAEventRecord.objects.filter(task_id__in=ids).count() == 15 * 8
    assert events_per_task("task.sla_warning") == Counter({str(t.pk): 1 for t in tasks["claim"]})
    assert events_per_task("task.sla_breached") == Counter({str(pk): 1 for pk in ids})
    assert events_per_task("task.escalated") == Counter(
        {**{str(t.pk): 2 for t in tasks["claim"]}, **{str(t.pk): 1 for t in tasks["bug"]}}
    )
    after = Counter(Notification.objects.values_list("recipient__username", flat=True))
    new = after - before
    assert new["boss"] == 15 + 15  # claims' level 1, the fixed tasks' breaches
    assert new["chief"] == 15  # claims' level 2, after the move into Escalations
    agents = sum(c for name, c in new.items() if name.startswith("agent"))
    assert agents == 15 * 3 + 15 + 15  # claims: warning, breach, reminder; bugs; chores
    assert sum(new.values()) == 30 + 15 + agents  # a move into a queue notifies nobody


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_dies_half_way_is_redone_once(team: dict[str, Any]) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = mixed(team, 3)
        clock.shift(timedelta(hours=2))
        ids: list[int] = []
        with pytest.raises(RuntimeError), transaction.atomic():
            claimed = list(claim_query(timezone.now(), 100))  # as sla_sweep claims
            ids = [task.pk for task in claimed]
            assert len(ids) == 12
            assert fire_batch(ids, claimed=claimed).fired == 3 * 8
            raise RuntimeError("the worker died before the commit")
        assert not SLAEventRecord.objects.filter(task_id__in=ids).exists()
        # The claim's row locks ended with its transaction: the tasks are due again at once.
        result = sla_sweep(batch_size=100)
    assert (result.claimed, result.fired) == (12, 3 * 8)
    assert SLAEventRecord.objects.filter(task_id__in=ids).count() == 3 * 8
    assert sum(events_per_task("task.sla_breached").values()) == 12
    assert sum(events_per_task("task.escalated").values()) == 3 * 2 + 3
    assert all(t.sla_breached_at for t in Task.objects.filter(pk__in=ids))
    assert records(tasks["chore"]) == {t.pk: [("breach", 0)] for t in tasks["chore"]}


@pytest.mark.django_db(transaction=True)
def test_a_gone_target_is_reported_and_the_batch_goes_on(team: dict[str, Any], caplog: Any) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        bugs = create(team, 2, "bug")
        doomed = create(team, 2, "doomed")
        chores = create(team, 2, "chore")
        # the targets go away after the configs named them
        team["lead"].is_active = False
        team["lead"].save()
        Group.objects.filter(name="Doomed").delete()
        clock.shift(timedelta(hours=2))
        result = sla_sweep(batch_size=100)
    assert (result.claimed, result.failed, result.skipped) == (6, 0, 4)
    assert result.fired == 2 * 2 + 2 * 2 + 2
    for task, skipped in [(t, "reassign to lead") for t in bugs] + [
        (t, "reassign to Doomed") for t in doomed
    ]:
        event = Event.objects.get(type="task.escalated", entity_id=str(task.pk))
        assert event.payload["escalation"]["skipped"] == [skipped]
        refreshed = Task.objects.get(pk=task.pk)
        assert refreshed.assignee_id == task.assignee_id  # left where it was
        assert refreshed.queue.name == "Claims"
    assert Task.objects.get(pk=bugs[0].pk).priority == Priority.HIGH  # the other action ran
    assert "skipped: reassign to Doomed" in caplog.text
    assert all(records(chores).values())


@pytest.mark.django_db(transaction=True)
def test_a_threshold_recorded_earlier_is_marked_not_fired_again(team: dict[str, Any]) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        first, second = create(team, 2, "chore")
        clock.shift(timedelta(hours=2))
        SLAEventRecord.objects.create(
            task=first, kind="breach", level=0, due_at=start, fired_at=start
        )
        result = sla_sweep(batch_size=100)
    assert (result.claimed, result.fired) == (2, 1)
    assert events_per_task("task.sla_breached") == Counter({str(second.pk): 1})
    first.refresh_from_db()
    assert first.sla_breached_at is not None and first.sla_next_check_at is None


@pytest.mark.django_db(transaction=True)
def test_the_batch_live_updates_reach_whom_the_inbox_rules_name(
    team: dict[str, Any], make_user: Any
) -> None:
    """The audiences worked out for a whole batch are those of ``tasks_inbox.live``'s rules
    for each task, queue and notification (one ``queue`` update per queue of the batch)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from automation.live import Audience, user_group
    from tasks_inbox.live import notification_audience, queue_audience, task_audience
    from tasks_inbox.sla.fire import _live_messages

    make_user("admin", staff=True)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        tasks = mixed(team, 2)
        clock.shift(timedelta(hours=2))
        first_event = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        first_note = Notification.objects.order_by("-id").values_list("id", flat=True).first()
        assert sla_sweep(batch_size=100).claimed == 8
    events = Event.objects.filter(pk__gt=first_event, entity_type="task").order_by("id")
    notified = list(
        Notification.objects.filter(pk__gt=first_note or 0).values_list("pk", "recipient_id")
    )
    updates = [
        (int(e.entity_id), e.payload["state"], e.payload["queue_id"], e.type) for e in events
    ]
    assert len(updates) == sum(len(group) for group in tasks.values()) + 2 * 3 + 2
    # every other user has a live socket open: only they are in the audiences (with Redis;
    # the in-memory layer cannot tell who listens, so everyone is)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    users = sorted(get_user_model().objects.values_list("pk", flat=True))
    for pk in users[::2]:
        async_to_sync(layer.group_add)(user_group(pk), channel)
    owners = {
        pk: (assignee, queue)
        for pk, assignee, queue in Task.objects.filter(
            pk__in=[task_id for task_id, _, _, _ in updates]
        ).values_list("pk", "assignee_id", "queue_id")
    }
    try:
        messages = _live_messages(updates, notified, owners)
    finally:
        for pk in users[::2]:
            async_to_sync(layer.group_discard)(user_group(pk), channel)
    listening = set(users[::2]) if hasattr(layer, "_group_key") else set(users)

    def expected(audience: Audience) -> Audience:
        return Audience(user_ids=audience.user_ids & listening, staff_runs=audience.staff_runs)

    seen_queues = []
    for topic, payload, audience in messages:
        if topic == "task":
            assert audience == expected(task_audience(payload["id"])), payload
        elif topic == "queue":
            seen_queues.append(payload["id"])
            assert audience == expected(queue_audience(payload["id"])), payload
        else:
            assert audience == expected(notification_audience(payload["id"])), payload
    assert any(audience.user_ids for topic, _, audience in messages if topic == "task")
    assert sorted(seen_queues) == sorted(
        Group.objects.filter(name__in=["Claims", "Escalations"]).values_list("pk", flat=True)
    )
    heard = [recipient for _, recipient in notified if recipient in listening]
    assert sum(topic == "notification" for topic, _, _ in messages) == len(heard) > 0
    assert len(heard) < len(notified) or listening == set(users)

    if hasattr(layer, "_group_key"):  # nobody listening: nothing sent, no audience worked out
        with CaptureQueriesContext(connection) as queries:
            assert _live_messages(updates, notified, owners) == []
        assert len(queries) <= 4


@pytest.mark.django_db
def test_a_batch_publish_reaches_listened_groups_and_skips_the_others() -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from automation.live import Audience, publish_many_now

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("user.424242", channel)
    try:
        sent = publish_many_now([("task", {"id": 7}, Audience.users([424242, 424243]))])
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)("user.424242", channel)
    assert message["message"] == {"topic": "task", "id": 7}
    # the group nobody listens on is skipped with Redis; the in-memory layer sends to both
    assert sent == (1 if hasattr(layer, "_group_key") else 2)


@pytest.mark.django_db
def test_a_write_that_fails_rolls_the_batch_back_and_each_task_is_checked_alone(
    team: dict[str, Any], caplog: Any
) -> None:
    """The batch's writes go out pipelined: one that fails (here a notification the
    database refuses, for one task) is reported at the end, the batch's transaction rolls
    back whole (no record, event or notification of it is left), and the tasks are then
    checked one by one: the others fire once, the bad one is left for later."""
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE tasks_inbox_notification ADD CONSTRAINT no_poison "
            "CHECK (message NOT LIKE 'SLA breached: Poison%%')"
        )
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        chores = create(team, 4, "chore")
        poison = services.task_create(
            title="Poison chore", task_type="chore", assignee=team["agents"][0]
        )
        clock.shift(timedelta(hours=2))
        result = sla_sweep(batch_size=100)
    assert (result.claimed, result.fired, result.failed) == (5, 4, 1)
    assert "checking them one by one" in caplog.text
    assert records(chores) == {t.pk: [("breach", 0)] for t in chores}
    assert not SLAEventRecord.objects.filter(task=poison).exists()
    assert events_per_task("task.sla_breached") == Counter({str(t.pk): 1 for t in chores})
    breached = Notification.objects.filter(message__startswith="SLA breached")
    assert breached.count() == 4
    poison.refresh_from_db()
    assert poison.sla_breached_at is None and poison.sla_next_check_at > start + timedelta(hours=2)
