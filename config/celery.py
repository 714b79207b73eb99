"""The Celery application. Settings live in ``config.settings`` under the ``CELERY_`` prefix."""

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_prerun
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The embedded broker writes each message atomically (see config.broker).
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

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


SWEEP_TASK_PREFIX = "flowdesk.sweep."


class QuietSweepsFilter(logging.Filter):
    """Log Celery's routine lines about the beat sweeps at DEBUG instead of INFO.

    Beat sends a sweep every few seconds and the worker says "received" and "succeeded" for
    each; at INFO that buries everything else. Attached (in ``settings.LOGGING``) to the
    loggers that write those lines, this turns them into DEBUG records, shown only when
    DEBUG is enabled. A sweep that did work says so itself, at INFO, with its counts
    (``automation.tasks``, ``tasks_inbox.tasks``). Failures and retries are not touched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _names_a_sweep(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _names_a_sweep(record: logging.LogRecord) -> bool:
    args = record.args
    if isinstance(args, dict):  # the worker's received/succeeded lines: a context dict
        name = args.get("name")
        if record.msg not in _ROUTINE_TASK_LINES:
            return False
    elif isinstance(args, tuple) and len(args) == 2:  # beat: (entry name, task name)
        name = args[1]
    else:
        return False
    return isinstance(name, str) and name.startswith(SWEEP_TASK_PREFIX)


def _routine_task_lines() -> frozenset[str]:
    from celery.app import trace

    return frozenset({trace.LOG_RECEIVED, trace.LOG_SUCCESS})


_ROUTINE_TASK_LINES = _routine_task_lines()


@after_setup_logger.connect(dispatch_uid="flowdesk.mask_secrets")
@after_setup_task_logger.connect(dispatch_uid="flowdesk.mask_task_secrets")
def mask_secrets_in_worker_logs(logger: Any, **kwargs: Any) -> None:
    """The worker replaces the root logger's handlers with its own: give them the filter
    ``settings.LOGGING`` puts on the console handler, so secrets are masked there too."""
    from automation.secrets import SecretMaskFilter

    for handler in logger.handlers:
        if not any(isinstance(f, SecretMaskFilter) for f in handler.filters):
            handler.addFilter(SecretMaskFilter())
