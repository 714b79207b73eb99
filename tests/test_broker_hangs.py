"""A broker that accepts connections and never answers holds nothing forever.

A thread of the test listens on a loopback port, accepts every connection and never sends a
byte: a hung Redis, or a half-open socket after a failover. The code under test (a web
server, ``emit()`` in a shell) runs in a subprocess whose broker, cache and channel layer
are that port. Every Redis client gives up after ``FLOWDESK_REDIS_SOCKET_TIMEOUT``
(``config/settings.py``), so the request is answered, the event and the task's completion
are committed, and what could not be published is left to the sweeps. Without the socket
timeouts each of these waits forever (the HTTP client's and the subprocess's own timeouts
end the test).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from automation import services
from automation.events import emit
from automation.models import ActionRun, Event, Run
from crm.models import Deal
from tasks_inbox.models import Task
from tasks_inbox.services import task_transition
from tests.conftest import ARTIFACTS, ROOT, wait_for, worker_env
from tests.test_durability import free_port, post, shell, staff_token, task_workflow

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class SilentBroker:
    """Accepts connections on a loopback port, reads nothing, answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_broker() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.close()


def on_silent_broker(broker: SilentBroker) -> dict[str, str]:
    return worker_env(
        CELERY_BROKER_URL=broker.url, CACHE_URL=broker.url, CHANNELS_REDIS_URL=broker.url
    )


@pytest.fixture
def hung_web(silent_broker: SilentBroker, transactional_db: Any) -> Iterator[str]:
    """``manage.py runserver`` on the test database, its Redis the silent broker."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"web-hung-{port}.log", "ab")  # noqa: SIM115  (the server's)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=on_silent_broker(silent_broker),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(listening, timeout=60, interval=0.2, message="the web server")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_posting_an_event_to_a_hung_broker_answers_202_and_stores_it(
    hung_web: str, make_user: Callable[..., Any]
) -> None:
    token = staff_token(make_user)
    status, body = post(
        f"{hung_web}/api/v1/events/", token, {"type": "deal.won", "payload": {"deal_id": 1}}
    )
    assert status == 202, body
    event = Event.objects.get(pk=body["id"])
    assert (event.type, event.dispatched_at) == ("deal.won", None)  # the outbox sweep's


def test_completing_a_task_with_a_hung_broker_answers_200(
    hung_web: str, make_user: Callable[..., Any]
) -> None:
    token = staff_token(make_user)
    deal = Deal.objects.create(name="Hung")
    task_workflow()
    emit("deal.won", {"deal_id": deal.pk})
    services.outbox_drain()
    task = Task.objects.get()
    task_transition(task_id=task.pk, action="start", actor=None)
    run = Run.objects.get()

    status, body = post(f"{hung_web}/api/v1/tasks/{task.pk}/complete/", token, {})
    assert status == 200, body
    task.refresh_from_db()
    assert not task.is_open
    assert ActionRun.objects.get(run=run, step_key="review").status == "completed"
    # Its advance could not be published: the run waits on nothing, for the stale sweep.
    assert Run.objects.get(pk=run.pk).status == "waiting"
    assert services.runs_resume_stale(older_than=timedelta(0)) == 1


def test_emit_returns_with_a_hung_broker(
    silent_broker: SilentBroker, transactional_db: Any
) -> None:
    done = shell(
        "from automation.events import emit\nfor i in range(3): emit('deal.won', {'i': i})",
        on_silent_broker(silent_broker),
    )
    assert done.returncode == 0, done.stderr
    assert Event.objects.filter(type="deal.won", dispatched_at__isnull=True).count() == 3
    assert silent_broker.accepted  # it did try the broker
