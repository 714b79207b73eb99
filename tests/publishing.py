"""Loaded by test workers (``FLOWDESK_ACTION_MODULES``): count the task messages they
publish, by task name, in the broker's Redis (``flowdesk:test:published:<name>``)."""

from __future__ import annotations

from typing import Any

import redis
from celery.signals import before_task_publish
from django.conf import settings

_counter = redis.Redis.from_url(settings.CELERY_BROKER_URL)


@before_task_publish.connect(weak=False)
def count_published(sender: str | None = None, **kwargs: Any) -> None:
    _counter.incr(f"flowdesk:test:published:{sender}")
