"""Tasks the benchmark's workers load (``celery worker --include bench.worker_tasks``).

``bench.noop`` is the C0 baseline: a task that does nothing but count itself, so the
benchmark knows exactly when the queue has been drained. The count and the times of the
first and last completion live in the broker's Redis (one pipelined round trip per task).
"""

from __future__ import annotations

import os
import time

import redis
from celery import shared_task

COUNT_KEY = "bench:noop:count"
FIRST_KEY = "bench:noop:first"
LAST_KEY = "bench:noop:last"

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """One connection per worker process (created after the prefork fork)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    return _client


@shared_task(name="bench.noop", ignore_result=True)
def noop() -> None:
    now = time.time()
    pipe = client().pipeline(transaction=False)
    pipe.incr(COUNT_KEY)
    pipe.setnx(FIRST_KEY, now)
    pipe.set(LAST_KEY, now)
    pipe.execute()
