"""The Celery application. Settings live in ``config.settings`` under the ``CELERY_`` prefix."""

import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("flowdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="flowdesk.ping", ignore_result=True)
def ping() -> str:
    """A no-op task: used by the health check's broker probe and by the benchmark baseline."""
    return "pong"


@task_prerun.connect(dispatch_uid="flowdesk.db_connections")
def refresh_db_connections(**kwargs: Any) -> None:
    """Reuse database connections across tasks the way Django does across requests.

    Celery's Django fixup would close the connection around every task (settings set
    ``CELERY_DB_REUSE_MAX`` high to stop it: a new PostgreSQL backend per task costs more
    than the task). Instead, before each task, drop a connection that is broken or older
    than ``CONN_MAX_AGE``, exactly as Django does at the start of a request.
    """
    from django.db import close_old_connections

    close_old_connections()


@after_setup_logger.connect(dispatch_uid="flowdesk.mask_secrets")
@after_setup_task_logger.connect(dispatch_uid="flowdesk.mask_task_secrets")
def mask_secrets_in_worker_logs(logger: Any, **kwargs: Any) -> None:
    """The worker replaces the root logger's handlers with its own: give them the filter
    ``settings.LOGGING`` puts on the console handler, so secrets are masked there too."""
    from automation.secrets import SecretMaskFilter

    for handler in logger.handlers:
        if not any(isinstance(f, SecretMaskFilter) for f in handler.filters):
            handler.addFilter(SecretMaskFilter())
