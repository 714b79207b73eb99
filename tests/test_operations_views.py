"""Operations views: a run's timeline (actual against expected step times), progress and its
on-track / delayed / blocked indicator; the monitoring page's active runs with those
indicators and its task queue dashboard, read in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import operations
from automation.events import emit
from automation.models import ActionRun, Run, RunStatus, StepStatus
from crm.models import Deal
from tasks_inbox import dashboard
from tasks_inbox import services as tasks
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db

STEPS = [
    {
        "key": "note",
        "type": "add_note",
        "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "n"},
    },
    {"key": "wait", "type": "delay", "config": {"for": "1 day"}},
    {
        "key": "last",
        "type": "add_note",
        "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "done"},
    },
]


@pytest.fixture
def workflow(db: Any) -> Any:
    return workflow_save(
        document={
            "slug": "ops",
            "name": "Operated",
            "triggers": [{"event_type": "deal.won"}],
            "steps": STEPS,
        }
    )


def start_runs(drain: Any, count: int) -> list[Run]:
    """``count`` runs of the ``ops`` workflow, each parked on its ``wait`` step."""
    before = set(Run.objects.values_list("pk", flat=True))
    deal = Deal.objects.create(name="D")
    for _ in range(count):
        emit("deal.won", {"deal_id": deal.pk})
    drain()
    runs = list(Run.objects.exclude(pk__in=before).order_by("pk"))
    assert len(runs) == count and {r.status for r in runs} == {RunStatus.WAITING}
    return runs


def set_step(run: Run, key: str, *, seconds: float, ago: float = 0.0, status: str = "") -> None:
    """Put step ``key`` of ``run`` at a known time: started ``ago + seconds`` seconds ago and
    (when it is finished) done ``ago`` seconds ago."""
    now = timezone.now()
    started = now - dt.timedelta(seconds=ago + seconds)
    fields: dict[str, Any] = {"started_at": started}
    if status:
        fields["status"] = status
    if (status or ActionRun.objects.get(run=run, step_key=key).status) in ("completed", "failed"):
        fields["finished_at"] = started + dt.timedelta(seconds=seconds)
    ActionRun.objects.filter(run=run, step_key=key).update(**fields)


@pytest.fixture
def history(drain: Any, workflow: Any) -> list[Run]:
    """Three earlier runs whose ``note`` took 2, 4 and 6 s and ``wait`` took 10, 20, 30 s
    (p50: 4 s and 20 s)."""
    runs = start_runs(drain, 3)
    for run, note, wait in zip(runs, (2, 4, 6), (10, 20, 30), strict=True):
        set_step(run, "note", seconds=note, ago=wait + 100)
        set_step(run, "wait", seconds=wait, ago=100, status="completed")
        Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    return runs


def test_expected_times_are_the_p50_of_other_runs_of_the_same_workflow_and_step(
    history: list[Run], workflow: Any
) -> None:
    expected = operations.expected_step_seconds(
        {(workflow.pk, "note"), (workflow.pk, "wait"), (workflow.pk, "last")}
    )
    assert expected == {(workflow.pk, "note"): 4.0, (workflow.pk, "wait"): 20.0}
    # the runs being judged are left out of their own expectation
    left_out = operations.expected_step_seconds(
        {(workflow.pk, "note")}, exclude_runs=[history[1].pk]
    )
    assert left_out == {(workflow.pk, "note"): 4.0}  # median of 2 and 6
    assert operations.expected_step_seconds(set()) == {}


def test_a_run_is_on_track_then_delayed_when_its_waiting_step_passes_its_p50(
    history: list[Run], drain: Any
) -> None:
    (run,) = start_runs(drain, 1)
    set_step(run, "note", seconds=3, ago=5)
    set_step(run, "wait", seconds=5)  # waiting for 5 s, expected 20 s
    health = operations.run_health(run.pk)
    assert health is not None
    assert (health.indicator, health.reasons) == ("on_track", [])
    assert (health.steps_done, health.steps_planned) == (1, 3)
    by_key = {s.key: s for s in health.steps}
    assert by_key["note"].expected_seconds == 4.0 and by_key["note"].actual_seconds == 3.0
    assert by_key["wait"].expected_seconds == 20.0
    assert 4.9 < by_key["wait"].actual_seconds < 6
    assert by_key["last"].offset is None and by_key["last"].expected_seconds is None
    assert health.expected_seconds == 24.0

    # 1.5 x 20 s + 2 s = 32 s: at 31 s still on track, at 33 s delayed
    set_step(run, "wait", seconds=31)
    assert operations.run_health(run.pk).indicator == "on_track"
    set_step(run, "wait", seconds=33)
    health = operations.run_health(run.pk)
    assert health.indicator == "delayed"
    assert re.fullmatch(r"step wait has taken 3[34] s, expected 20 s", health.reasons[0])
    assert [s.late for s in health.steps] == [False, True, False]


def test_a_run_past_the_sum_of_its_expected_times_is_delayed(
    history: list[Run], drain: Any
) -> None:
    (run,) = start_runs(drain, 1)
    # each step within its own margin, the whole run (70 s) past 1.5 x 24 s + 2 s
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - dt.timedelta(seconds=70))
    set_step(run, "note", seconds=3, ago=20)
    set_step(run, "wait", seconds=20)
    health = operations.run_health(run.pk)
    assert health.indicator == "delayed"
    assert re.fullmatch(r"the run has taken 1 min 1[01] s, expected 24 s", *health.reasons)


def test_a_run_is_blocked_when_suspended_retrying_or_failed(history: list[Run], drain: Any) -> None:
    (run,) = start_runs(drain, 1)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUSPENDED)
    health = operations.run_health(run.pk)
    assert (health.indicator, health.reasons) == ("blocked", ["the run is suspended"])

    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    ActionRun.objects.filter(run=run, step_key="wait").update(
        status=StepStatus.PENDING, attempts=1, error_code="HTTP_503"
    )
    health = operations.run_health(run.pk)
    assert health.indicator == "blocked"
    assert health.reasons == ["step wait is retrying after HTTP_503"]

    ActionRun.objects.filter(run=run, step_key="wait").update(
        status=StepStatus.FAILED, error_code="DEAD_LETTER", finished_at=timezone.now()
    )
    Run.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
    health = operations.run_health(run.pk)
    assert health.indicator == "blocked"
    assert health.reasons == ["step wait failed (DEAD_LETTER)", "it waits for a retry"]

    Run.objects.filter(pk=history[0].pk).update(finished_at=timezone.now())
    assert operations.run_health(history[0].pk).indicator == "finished"
    assert operations.run_health(10**9) is None


def test_a_run_waiting_on_an_overdue_task_is_blocked(db: Any, drain: Any) -> None:
    Group.objects.create(name="Claims")
    workflow_save(
        document={
            "slug": "review",
            "name": "Review",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "review",
                    "type": "create_task",
                    "config": {"title": "Review", "queue": "Claims", "wait": True},
                }
            ],
        }
    )
    emit("deal.won", {"deal_id": Deal.objects.create(name="R").pk})
    drain()
    run = Run.objects.get(workflow__slug="review")
    step = ActionRun.objects.get(run=run)
    assert step.status == "waiting" and step.waiting_on.startswith("task:")
    task_id = int(step.waiting_on.split(":")[1])
    assert operations.run_health(run.pk).indicator == "on_track"

    tasks.Task.objects.filter(pk=task_id).update(due_at=timezone.now() - dt.timedelta(hours=1))
    health = operations.run_health(run.pk)
    assert health.indicator == "blocked"
    assert health.reasons == [f"step review waits on task:{task_id}, which is overdue"]
    # a closed task no longer holds it up, whatever its due time
    tasks.Task.objects.filter(pk=task_id).update(is_open=False)
    assert operations.run_health(run.pk).indicator == "on_track"
    assert dashboard.late_waits(["task:x", "run:1", "task:", f"task:{task_id}"]) == set()


def test_the_run_page_shows_the_timeline_inside_its_live_region(
    client: Client, admin_user: Any, history: list[Run], drain: Any
) -> None:
    (run,) = start_runs(drain, 1)
    set_step(run, "note", seconds=3, ago=40)
    set_step(run, "wait", seconds=40)
    client.force_login(admin_user)
    html = client.get(f"/admin/automation/run/{run.pk}/change/").content.decode()
    region = html[html.index('id="live-run-fields"') : html.index('id="live-run-steps"')]
    assert 'class="indicator indicator-delayed">delayed<' in region
    assert "1 of 3 steps done" in region
    assert re.search(r"step wait has taken \d\d s, expected 20 s", region)
    rows = re.findall(r'class="gantt-row" role="row" data-key="(\w+)" data-status="(\w+)"', region)
    assert rows == [("note", "completed"), ("wait", "waiting"), ("last", "pending")]
    assert '<span class="gantt-bar status-waiting" style="left:' in region
    assert region.count('class="gantt-expected"') == 2  # "last" has no history
    # the step graph is in the same region: both recolour when a run message arrives
    assert 'data-key="wait" data-status="waiting"' in region
    for left, width in re.findall(r'style="left:([\d.]+)%;width:([\d.]+)%"', region):
        assert float(left) >= 0 and float(left) + float(width) <= 100.01


AGENTS = itertools.count()


def make_queue_work(make_user: Any, n: int) -> None:
    """Tasks in ``n`` queues: each queue one unassigned, one overdue assigned to its own
    agent, one closed after about an hour."""
    now = timezone.now()
    for i in range(n):
        queue = Group.objects.get_or_create(name=f"Q{i}")[0]
        agent = make_user(f"agent{i}-{next(AGENTS)}", groups=(queue.name,))
        tasks.task_create(title=f"open {i}", queue=queue, routing="claim")
        tasks.task_create(
            title=f"late {i}", queue=queue, assignee=agent, due_at=now - dt.timedelta(hours=1)
        )
        done = tasks.task_create(title=f"done {i}", queue=queue, assignee=agent)
        tasks.task_transition(task_id=done.pk, action="start", actor=agent)
        tasks.task_complete(task_id=done.pk, actor=agent)
        tasks.Task.objects.filter(pk=done.pk).update(created_at=now - dt.timedelta(hours=1))


def test_the_queue_dashboard_counts_by_queue_and_by_assignee(make_user: Any) -> None:
    make_queue_work(make_user, 2)
    extra = make_user("busy", groups=("Q0",))
    for i in range(3):
        tasks.task_create(title=f"more {i}", queue=Group.objects.get(name="Q0"), assignee=extra)
    figures = dashboard.queue_dashboard(hours=24)
    totals = figures["totals"]
    assert (totals["open"], totals["unassigned"], totals["overdue"], totals["closed"]) == (
        7,
        2,
        2,
        2,
    )
    assert 3600 <= totals["avg_completion_seconds"] < 3700  # an hour, and the test's time
    q0 = figures["by_queue"][0]
    assert (q0["queue"], q0["open"], q0["unassigned"], q0["overdue"], q0["closed"]) == (
        "Q0",
        5,
        1,
        1,
        1,
    )
    people = {p["assignee"]: p for p in figures["by_assignee"]}
    assert figures["by_assignee"][0]["assignee"] == "busy"
    assert people["busy"]["open"] == 3 and people["busy"]["share_pct"] == 60.0
    assert people["busy"]["bar_pct"] == 100.0
    agent0 = next(p for name, p in people.items() if name.startswith("agent0"))
    assert (agent0["open"], agent0["overdue"], agent0["closed"]) == (1, 1, 1)
    assert agent0["share_pct"] == 20.0
    assert {b["label"]: b["people"] for b in figures["workload_bands"]} == {
        "1-2": 2,
        "3-5": 1,
        "6-10": 0,
        "11+": 0,
    }


def monitoring_viewer(make_user: Any) -> Any:
    viewer = make_user("watcher", staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_monitoring"),
        Permission.objects.get(codename="view_run"),
    )
    return viewer


def test_monitoring_shows_active_runs_with_indicators_and_the_queue_dashboard(
    client: Client, make_user: Any, history: list[Run], drain: Any
) -> None:
    on_time, late = start_runs(drain, 2)
    set_step(late, "wait", seconds=100)
    make_queue_work(make_user, 1)
    client.force_login(monitoring_viewer(make_user))
    html = client.get("/monitoring/").content.decode()
    assert re.search(rf'id="active-run-{on_time.pk}" data-indicator="on_track"', html)
    assert re.search(rf'id="active-run-{late.pk}" data-indicator="delayed"', html)
    assert "on track 1</span>" in html and "delayed 1</span>" in html
    assert re.search(r"step wait has taken 1 min \d+ s, expected 20 s", html)
    assert '<span class="run-progress">1/3</span>' in html
    queues = html[html.index('id="tasks-by-queue"') :]
    assert re.search(r"<td>Q0</td><td>2</td><td>1</td><td><span class=\"overdue\">1</span>", queues)
    assert "1 h" in queues  # the average completion time
    assert 'id="live-task-queues" data-live="task queue"' in html


def test_monitoring_reads_in_the_same_number_of_queries_whatever_it_shows(
    client: Client, make_user: Any, history: list[Run], drain: Any
) -> None:
    client.force_login(monitoring_viewer(make_user))
    start_runs(drain, 1)
    make_queue_work(make_user, 1)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/monitoring/").status_code == 200
    start_runs(drain, 6)
    make_queue_work(make_user, 4)
    with CaptureQueriesContext(connection) as many:
        html = client.get("/monitoring/").content.decode()
    assert html.count('id="active-run-') == 7
    assert len(many.captured_queries) == len(few.captured_queries), [
        q["sql"][:120] for q in many.captured_queries
    ]
    # and the run page's timeline costs the same for a run of any length
    run = Run.objects.filter(status=RunStatus.WAITING).first()
    with CaptureQueriesContext(connection) as page:
        operations.run_health(run.pk)
    # the run, its steps, their expected times (and the late tasks, when a step waits on one)
    assert len(page.captured_queries) == 3


def test_monitoring_and_run_pages_refuse_users_without_the_permissions(
    client: Client, make_user: Any, history: list[Run]
) -> None:
    client.force_login(make_user("agent", groups=("Q0",)))
    assert client.get("/monitoring/").status_code == 403
    page = client.get(f"/admin/automation/run/{history[0].pk}/change/")
    assert page.status_code == 302 and "/login/" in page["Location"]
