"""call_webhook on a real Celery worker (PostgreSQL + Redis) against a loopback HTTP server:
retries with backoff, Retry-After, dead letters, and a worker killed mid-delivery.

Timings are measured by the receiver (arrival of each attempt) and printed (run with -s).
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from automation import services
from automation.models import Run, RunStatus, StepStatus
from automation.secrets import secret_set
from tests.conftest import WorkerProcess, wait_for
from tests.step_servers import (
    Answer,
    WebhookReceiver,
    execute,
    one_step_workflow,
    step_of,
    webhook_receiver,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SIGNING_KEY = "whsec_" + base64.b64encode(os.urandom(32)).decode()
FAST_RETRY = {"max_attempts": 3, "backoff_seconds": 1, "max_backoff_seconds": 1}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as server:
        yield server


@pytest.fixture
def hook_worker(start_worker: Callable[..., WorkerProcess]) -> Callable[..., WorkerProcess]:
    def start(**env: str) -> WorkerProcess:
        return start_worker("hook", concurrency=1, FLOWDESK_WEBHOOK_ALLOW_HOSTS="127.0.0.1", **env)

    return start


def finished(run: Any, timeout: float = 60) -> Run:
    return wait_for(
        lambda: Run.objects.filter(
            pk=run.pk, status__in=[RunStatus.COMPLETED, RunStatus.FAILED]
        ).first(),
        timeout=timeout,
        message=f"run {run.pk} to finish",
    )


def gaps(receiver: WebhookReceiver) -> list[float]:
    times = [request.at for request in receiver.requests]
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def test_503_then_200_is_two_attempts_with_backoff(
    receiver: WebhookReceiver, hook_worker: Any
) -> None:
    secret_set(name="HOOK_KEY", value=SIGNING_KEY)
    receiver.script = [Answer(status=503, body=b"busy")]
    hook_worker()
    run = execute(
        one_step_workflow(
            "retry",
            "call_webhook",
            {"url": receiver.url, "body": {"n": "{{n}}"}, "signing_secret": "HOOK_KEY"},
            retry=FAST_RETRY,
        ),
        {"n": 1},
    )
    run = finished(run)

    step = step_of(run)
    assert run.status == RunStatus.COMPLETED, run.error
    assert (step.status, step.attempts, step.output["status"]) == (StepStatus.COMPLETED, 2, 200)
    assert len(receiver.requests) == 2
    assert [r.headers["webhook-id"] for r in receiver.requests] == [f"flowdesk-ar-{step.pk}"] * 2
    for request in receiver.requests:
        assert Webhook(SIGNING_KEY).verify(request.body, request.headers) == {"n": 1}
    [gap] = gaps(receiver)
    print(f"\n503 then 200: gap between attempts {gap:.3f}s (backoff 0.5..1s with jitter)")
    assert 0.5 <= gap < 15


def test_three_500s_with_a_limit_of_three_dead_letter(
    receiver: WebhookReceiver, hook_worker: Any
) -> None:
    receiver.default = Answer(
        status=500, body=b"x" * 100_000, headers={"Content-Type": "text/plain", "X-Request": "r-9"}
    )
    hook_worker()
    run = execute(
        one_step_workflow(
            "dead",
            "call_webhook",
            {"url": receiver.url, "body": {"a": 1}, "max_response_bytes": 1000},
            retry={"max_attempts": 3, "backoff_seconds": 0.5, "max_backoff_seconds": 1},
        )
    )
    run = finished(run)

    step = step_of(run)
    assert len(receiver.requests) == 3
    assert (run.status, run.error_code) == (RunStatus.FAILED, "DEAD_LETTER")
    assert (step.status, step.error_code, step.attempts) == (StepStatus.FAILED, "DEAD_LETTER", 3)
    assert "gave up after 3 attempts" in step.error
    last = step.output["response"]
    assert (step.output["status"], last["status"], step.output["attempt"]) == (500, 500, 3)
    assert last["headers"]["x-request"] == "r-9"
    assert last["truncated"] is True and len(last["body"]) == 1000
    print(f"\n3 x 500: gaps between attempts {gaps(receiver)}s")


def test_429_with_retry_after_waits_at_least_that_long(
    receiver: WebhookReceiver, hook_worker: Any
) -> None:
    receiver.script = [Answer(status=429, headers={"Retry-After": "3"}, body=b"slow down")]
    hook_worker()
    run = execute(
        one_step_workflow(
            "limited",
            "call_webhook",
            {"url": receiver.url},
            retry={"max_attempts": 3, "backoff_seconds": 0.2, "max_backoff_seconds": 0.2},
        )
    )
    run = finished(run)
    assert run.status == RunStatus.COMPLETED, run.error
    [gap] = gaps(receiver)
    print(f"\n429 Retry-After: 3 -> next attempt after {gap:.3f}s")
    assert gap >= 3.0
    assert step_of(run).attempts == 2


def test_worker_killed_mid_delivery_redelivers_with_the_same_id(
    receiver: WebhookReceiver, hook_worker: Any
) -> None:
    secret_set(name="HOOK_KEY", value=SIGNING_KEY)
    receiver.script = [Answer(hold=True)]  # the first delivery never gets an answer
    first_worker = hook_worker()
    run = execute(
        one_step_workflow(
            "killed",
            "call_webhook",
            {"url": receiver.url, "body": {"lead": 7}, "signing_secret": "HOOK_KEY"},
        )
    )
    receiver.wait(1)
    assert len(receiver.requests) == 1
    first_worker.kill()
    step = step_of(run)
    assert step.status == StepStatus.RUNNING and step.attempts == 1

    hook_worker()
    assert services.runs_resume_stale(older_than=timedelta(0)) >= 1
    run = finished(run)

    assert run.status == RunStatus.COMPLETED, run.error
    step = step_of(run)
    assert (step.status, step.attempts) == (StepStatus.COMPLETED, 2)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == (f"flowdesk-ar-{step.pk}")
    assert first.body == second.body
    for request in (first, second):
        Webhook(SIGNING_KEY).verify(request.body, request.headers)
