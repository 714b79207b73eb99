"""A worker survives a Redis restart while it holds unacknowledged work, and finishes it.

The worker runs against a private ``redis-server`` on a spare loopback port, so the test can
stop and start it without touching the Redis the other tests share.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from automation.events import emit
from automation.models import Run
from config.celery import app
from crm.models import Deal
from tests.conftest import ARTIFACTS, notes_on, wait_for
from workflows.services import workflow_save

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server on PATH"
)


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway ``redis-server`` with no persistence: a restart loses every key."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"redis-{port}.log"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115  (owned by the subprocess)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_for(lambda: self._answers(client), timeout=10, message="redis-server to start")

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer(spare_port())
    server.start()
    yield server
    server.stop()


def test_worker_holding_work_survives_a_redis_restart(
    start_worker: Any, private_redis: RedisServer
) -> None:
    deal = Deal.objects.create(name="Redis restart")
    workflow_save(
        document={
            "slug": "restart",
            "name": "Restart",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "before",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "before"},
                },
                {"key": "slow", "type": "test_sleep", "config": {"seconds": 6}},
                {
                    "key": "after",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "after"},
                },
            ],
        }
    )
    worker = start_worker("restart", concurrency=2, CELERY_BROKER_URL=private_redis.url)
    first = emit("deal.won", {"deal_id": deal.pk})
    ring_private_broker(private_redis)
    wait_for(lambda: notes_on(deal) == ["before"], timeout=30, message="the first step")
    broker = redis.Redis.from_url(private_redis.url)
    # Kombu keeps a delivered, unacknowledged message in the ``unacked`` hash.
    wait_for(
        lambda: broker.hlen("unacked") > 0,
        timeout=10,
        message="the worker to hold an unacknowledged message",
    )
    broker.close()

    # The worker holds the slow step's message, unacknowledged, when Redis goes away.
    private_redis.stop()
    time.sleep(2)
    private_redis.start()

    wait_for(
        lambda: Run.objects.filter(event=first, status="completed").exists(),
        timeout=90,
        message="the run to complete after the Redis restart",
    )
    assert notes_on(deal) == ["after", "before"]
    # The same worker process is still there and takes new work from the restarted Redis.
    second = emit("deal.won", {"deal_id": deal.pk})
    ring_private_broker(private_redis)
    wait_for(
        lambda: Run.objects.filter(event=second, status="completed").exists(),
        timeout=90,
        message="a run started after the Redis restart",
    )
    assert worker.proc is not None
    assert worker.proc.poll() is None, f"the worker exited; log: {worker.log_path}"
    log = worker.log()
    assert "Connection to broker lost" in log
    assert "Unrecoverable error" not in log
    assert notes_on(deal) == ["after", "after", "before", "before"]


def ring_private_broker(server: RedisServer) -> None:
    """The event's own doorbell went to the shared test broker; ring the worker's."""
    with app.connection_for_write(server.url) as conn:
        app.send_task("flowdesk.dispatch_pending", connection=conn, queue="steps")
