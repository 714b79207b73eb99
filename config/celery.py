"""The Celery application. Settings live in ``config.settings`` under the ``CELERY_`` prefix."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("flowdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="flowdesk.ping", ignore_result=True)
def ping() -> str:
    """A no-op task: used by the health check's broker probe and by the benchmark baseline."""
    return "pong"
