"""Every run finishes: faults injected at the edges, deterministically.

- A wake committed without the advance that should follow it (its worker died in between,
  or the broker was down): the stale-run sweep takes the run on.
- The broker (and the cache on its Redis) down: a private ``redis-server`` that the test
  stops, with the code under test (a web server, a drain) in a subprocess pointed at it.
- Fan-out: a run of 60 parallel branches publishes each ``execute_step`` once.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from automation import services
from automation.events import emit
from automation.models import ActionRun, Event, Run
from crm.models import Deal
from tasks_inbox.models import Task
from tasks_inbox.services import task_transition
from tests.conftest import ARTIFACTS, ROOT, free_port, notes_on, wait_for, worker_env
from workflows.services import workflow_save

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class PrivateRedis:
    """A ``redis-server`` of the test's own on a spare loopback port, to stop and start."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=10, message=f"redis-server on {self.port}")
        assert self.proc.poll() is None, f"another server holds port {self.port}"

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port())  # a spare loopback port, this test's alone
    server.start()
    yield server
    server.stop()


def on_private_broker(redis_server: PrivateRedis) -> dict[str, str]:
    """A subprocess environment on the test database, with the private Redis as broker and
    cache."""
    return worker_env(CELERY_BROKER_URL=redis_server.url, CACHE_URL=redis_server.url)


@pytest.fixture
def web_server(private_redis: PrivateRedis, transactional_db: Any) -> Iterator[Callable[[], str]]:
    """``manage.py runserver`` on the test database, its broker the private Redis."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        port = free_port()
        ARTIFACTS.mkdir(exist_ok=True)
        log = open(ARTIFACTS / f"web-{port}.log", "ab")  # noqa: SIM115  (the server's)
        procs.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                cwd=ROOT,
                env=on_private_broker(private_redis),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
            except urllib.error.HTTPError:
                return True  # answering (unhealthy is fine: the broker may be down)
            except OSError:
                return False
            return True

        wait_for(up, timeout=60, interval=0.2, message="the web server")
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def post(url: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def staff_token(make_user: Callable[..., Any]) -> str:
    return Token.objects.create(user=make_user("ops", superuser=True)).key


# --- a wake that lost its advance -------------------------------------------------------


def test_a_wake_committed_without_its_advance_is_resumed_by_the_stale_sweep(
    celery_worker: Any,
) -> None:
    deal = Deal.objects.create(name="Wake")
    workflow_save(
        document={
            "slug": "wait",
            "name": "Wait",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {"key": "wait", "type": "delay", "config": {"for": "2 hours"}},
                {
                    "key": "after",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "after"},
                },
            ],
        }
    )
    emit("deal.won", {"deal_id": deal.pk})
    wait_for(lambda: Run.objects.filter(status="waiting").exists(), message="the wait")
    run = Run.objects.get()
    step = ActionRun.objects.get(run=run, step_key="wait")
    # The delay is over; its wake commits, and the worker that committed it dies before
    # advancing the run (this process wakes and never advances).
    ActionRun.objects.filter(pk=step.pk).update(wake_at=timezone.now() - timedelta(seconds=1))
    assert services.step_wake(action_run_id=step.pk) == run.pk
    step.refresh_from_db()
    run.refresh_from_db()
    assert (step.status, step.wake_at, run.status) == ("completed", None, "waiting")
    assert services.runs_wake_due() == 0  # nothing due: the wake sweep cannot see it

    assert services.runs_resume_stale(older_than=timedelta(0)) == 1
    wait_for(
        lambda: Run.objects.filter(pk=run.pk, status="completed").exists(),
        message="the stranded run to complete",
    )
    assert notes_on(deal) == ["after"]


def test_the_wake_sweep_publishes_each_advance_as_its_wake_commits(transactional_db: Any) -> None:
    """A wake whose advance was published survives the sweeper dying right after."""
    from celery.signals import before_task_publish

    from automation.tasks import advance_run

    deal = Deal.objects.create(name="Each")
    workflow_save(
        document={
            "slug": "each",
            "name": "Each",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {"key": "wait", "type": "delay", "config": {"for": "2 hours"}},
                {
                    "key": "after",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "x"},
                },
            ],
        }
    )
    for _ in range(3):
        emit("deal.won", {"deal_id": deal.pk})
    services.outbox_drain()
    assert Run.objects.filter(status="waiting").count() == 3
    ActionRun.objects.filter(step_key="wait").update(wake_at=timezone.now() - timedelta(seconds=1))
    published: list[tuple[int, int]] = []

    def on_publish(sender: str | None = None, body: Any = None, **kwargs: Any) -> None:
        if sender == advance_run.name:  # how many wakes had committed when it was sent?
            published.append(
                (body[0][0], ActionRun.objects.filter(step_key="wait", status="completed").count())
            )

    before_task_publish.connect(on_publish, weak=False)
    try:
        assert services.runs_wake_due() == 3
    finally:
        before_task_publish.disconnect(on_publish)
    # One message per wake, each published as soon as that wake committed (not all three
    # after the whole batch): the first went out when one wake had committed.
    assert sorted(run_id for run_id, _ in published) == sorted(
        Run.objects.values_list("pk", flat=True)
    )
    assert [committed for _, committed in published] == [1, 2, 3]


# --- the broker down at the edges -------------------------------------------------------


def task_workflow() -> None:
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
                        "assignee": "ops@example.com",
                        "wait": True,
                    },
                },
                {
                    "key": "after",
                    "type": "add_note",
                    "config": {
                        "entity_type": "deal",
                        "entity_id": "{{deal_id}}",
                        "note": "reviewed",
                    },
                },
            ],
        }
    )


def test_completing_a_task_while_the_broker_is_down_answers_200_and_a_sweep_resumes_the_run(
    web_server: Callable[[], str],
    private_redis: PrivateRedis,
    start_worker: Callable[..., Any],
    make_user: Callable[..., Any],
) -> None:
    token = staff_token(make_user)
    deal = Deal.objects.create(name="Down")
    task_workflow()
    emit("deal.won", {"deal_id": deal.pk})
    services.outbox_drain()
    task = Task.objects.get()
    task_transition(task_id=task.pk, action="start", actor=None)
    run = Run.objects.get()
    assert run.status == "waiting"
    base = web_server()

    private_redis.stop()
    status, body = post(f"{base}/api/v1/tasks/{task.pk}/complete/", token, {})
    assert status == 200, body
    task.refresh_from_db()
    assert not task.is_open  # committed
    assert ActionRun.objects.get(run=run, step_key="review").status == "completed"
    run.refresh_from_db()
    assert run.status == "waiting"  # its advance message could not be published

    start_worker("w")  # on the shared broker, which is up
    assert services.runs_resume_stale(older_than=timedelta(0)) == 1
    wait_for(
        lambda: Run.objects.filter(pk=run.pk, status="completed").exists(),
        message="the run resumed by the sweep",
    )
    assert notes_on(deal) == ["reviewed"]


def test_posting_an_event_while_redis_is_down_stores_it_and_answers_202(
    web_server: Callable[[], str], private_redis: PrivateRedis, make_user: Callable[..., Any]
) -> None:
    token = staff_token(make_user)
    base = web_server()
    private_redis.stop()
    status, body = post(
        f"{base}/api/v1/events/", token, {"type": "deal.won", "payload": {"deal_id": 1}}
    )
    assert status == 202, body
    event = Event.objects.get(pk=body["id"])
    assert (event.type, event.dispatched_at) == ("deal.won", None)  # the sweep's to send


def shell(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_publish_error_after_commit_does_not_skip_the_rest_of_a_drain(
    private_redis: PrivateRedis, transactional_db: Any
) -> None:
    deal = Deal.objects.create(name="Drain")
    note = {"entity_type": "deal", "entity_id": "{{deal_id}}"}
    workflow_save(
        document={  # its branches are handed out as messages after commit
            "slug": "fan",
            "name": "Fan",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": f"b{i}",
                    "type": "add_note",
                    "after": [],
                    "config": {**note, "note": f"b{i}"},
                }
                for i in range(3)
            ],
        }
    )
    workflow_save(
        document={  # its second step runs in the drain, after the commit
            "slug": "seq",
            "name": "Seq",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {"key": "one", "type": "add_note", "config": {**note, "note": "one"}},
                {"key": "two", "type": "add_note", "config": {**note, "note": "two"}},
            ],
        }
    )
    Event.objects.update(dispatched_at=timezone.now())
    with transaction.atomic():
        emit("deal.won", {"deal_id": deal.pk})
    private_redis.stop()
    from django.conf import settings

    # The broker down (the cache, which the trigger index reads, on the shared Redis).
    env = worker_env(CELERY_BROKER_URL=private_redis.url, CACHE_URL=settings.CELERY_BROKER_URL)
    done = shell("from automation import services; print(services.outbox_drain())", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1"
    seq = Run.objects.get(workflow__slug="seq")
    assert seq.status == "completed"
    assert "one" in notes_on(deal) and "two" in notes_on(deal)
    assert Run.objects.get(workflow__slug="fan").status == "running"  # the sweep's now


class CountingBroker:
    """A loopback port that accepts connections and closes them at once: a broker that is
    down, counting how often a client tries it."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_emit_tries_a_broker_that_is_down_a_bounded_number_of_times(
    private_redis: PrivateRedis, transactional_db: Any
) -> None:
    broker = CountingBroker()
    private_redis.stop()  # the cache: down too
    try:
        env = worker_env(
            CELERY_BROKER_URL=f"redis://127.0.0.1:{broker.port}/0", CACHE_URL=private_redis.url
        )
        done = shell(
            "from automation.events import emit\nfor i in range(10): emit('deal.won', {'i': i})",
            env,
        )
        assert done.returncode == 0, done.stderr
    finally:
        broker.close()
    assert Event.objects.filter(type="deal.won", dispatched_at__isnull=True).count() == 10
    # Two tries per event at most (Celery's default policy is four, over 0.6 s).
    assert 10 <= broker.accepted <= 20, broker.accepted


# --- fan-out --------------------------------------------------------------------------


def test_a_run_of_60_parallel_branches_publishes_each_step_about_once(
    start_worker: Callable[..., Any],
) -> None:
    import redis
    from django.conf import settings

    counter = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    counter.delete("flowdesk:test:published:flowdesk.execute_step")
    deal = Deal.objects.create(name="Fan")
    note = {"entity_type": "deal", "entity_id": "{{deal_id}}"}
    branches = 60
    workflow_save(
        document={
            "slug": "fan",
            "name": "Fan",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                *(
                    {
                        "key": f"b{i}",
                        "type": "add_note",
                        "after": [],
                        "config": {**note, "note": f"b{i:02}"},
                    }
                    for i in range(branches)
                ),
                {
                    "key": "join",
                    "type": "add_note",
                    "after": [f"b{i}" for i in range(branches)],
                    "config": {**note, "note": "join"},
                },
            ],
        }
    )
    start_worker("w", concurrency=2, FLOWDESK_ACTION_MODULES="tests.steps,tests.publishing")
    start_worker("w", concurrency=2, FLOWDESK_ACTION_MODULES="tests.steps,tests.publishing")
    emit("deal.won", {"deal_id": deal.pk})
    wait_for(
        lambda: Run.objects.filter(status="completed").exists(),
        timeout=120,
        message="the fan-out run",
    )
    assert len(notes_on(deal)) == branches + 1
    time.sleep(1)  # no late duplicates either
    published = int(counter.get("flowdesk:test:published:flowdesk.execute_step") or 0)
    assert branches - 1 <= published <= 2 * branches, published


# --- cancelling a run, the SLA sweep in run_sweeps -------------------------------------


def test_cancelling_a_run_cancels_the_open_task_it_waits_on(
    drain: Any, make_user: Callable[..., Any]
) -> None:
    make_user("ops")
    deal = Deal.objects.create(name="Cancel")
    task_workflow()
    emit("deal.won", {"deal_id": deal.pk})
    drain()
    run = Run.objects.get()
    task = Task.objects.get()
    assert (run.status, task.is_open) == ("waiting", True)

    services.run_cancel(run_id=run.pk)
    task.refresh_from_db()
    assert (task.state, task.is_open) == ("cancelled", False)
    assert task.history.filter(action="cancel").exists()
    statuses = dict(run.action_runs.values_list("step_key", "status"))
    assert statuses == {"review": "cancelled", "after": "cancelled"}
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_run_sweeps_runs_the_sla_sweep_too(db: Any, make_user: Callable[..., Any]) -> None:
    from io import StringIO

    import time_machine
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from tasks_inbox.models import Queue, SLAEventRecord
    from tasks_inbox.services import task_create
    from tasks_inbox.sla.configs import sla_config_save

    agent = make_user("agent", groups=("Claims",))
    Queue.objects.create(group=Group.objects.get(name="Claims"))
    sla_config_save(
        document={"name": "Claims", "queue": "Claims", "target": "1h", "warning_after": "30m"}
    )
    task = task_create(title="Claim", queue=Group.objects.get(name="Claims"), assignee=agent)
    out = StringIO()
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        call_command("run_sweeps", stdout=out)
    assert "sla: " in out.getvalue()
    assert set(SLAEventRecord.objects.filter(task=task).values_list("kind", flat=True)) >= {
        "warning",
        "breach",
    }


# --- an interrupted export continues from its last batch --------------------------------


def test_an_interrupted_export_continues_from_its_last_stored_batch(
    drain: Any, make_user: Callable[..., Any], settings: Any, tmp_path: Any
) -> None:
    import csv

    import time_machine

    from automation.actions.enqueue_export import BATCH_SIZE
    from automation.models import Export
    from crm.models import Lead
    from tests.step_servers import execute, one_step_workflow, step_of
    from tests.storages import FailOnSave

    settings.MEDIA_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "tests.storages.FailOnSave", "OPTIONS": {"location": str(tmp_path)}},
    }
    FailOnSave.saves, FailOnSave.saved = 0, []
    FailOnSave.fail_at = 3  # batches 1 and 2 are stored, the attempt dies storing the 3rd
    total = 5 * BATCH_SIZE + 123
    Lead.objects.bulk_create(
        [Lead(company_name=f"Co {i:06d}", status="new") for i in range(total)], batch_size=5000
    )
    boss = make_user("boss", staff=True)
    run = execute(
        one_step_workflow(
            "big", "enqueue_export", {"entity_type": "lead", "fields": ["id", "company_name"]}
        ),
        actor=boss,
    )
    drain()
    step = step_of(run)
    assert step.status == "pending" and step.error_code == "STEP_ERROR", step.error
    assert step.progress["rows_written"] == 2 * BATCH_SIZE
    assert len(step.progress["parts"]) == 2

    with time_machine.travel(step.wake_at + timedelta(seconds=1)):
        drain()
    step.refresh_from_db()
    assert step.status == "completed", step.error
    assert step.progress["resumed_at"] == 2 * BATCH_SIZE  # not row 0
    # The second attempt stored only the batches after the second, then the file.
    second = FailOnSave.saved[2:]
    assert [name.endswith(".part") for name in second] == [True] * 3 + [False]
    export = Export.objects.get(action_run=step)
    with open(tmp_path / export.file.name, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    ids = sorted(Lead.objects.values_list("pk", flat=True))
    assert rows[0] == ["id", "company_name"]
    assert [int(row[0]) for row in rows[1:]] == ids  # every row once, in order
    assert export.row_count == total
    assert not list(tmp_path.rglob("*.part"))  # the parts are gone
