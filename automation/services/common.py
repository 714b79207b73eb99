"""What the runtime's modules share: engine settings, the active run statuses, the fields a
step write saves, a version's definition (cached) and queueing a run's advance."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from automation.models import Run
from automation.statuses import RUN_ACTIVE_STATUSES

ACTIVE_RUN = RUN_ACTIVE_STATUSES
INLINE_STEP_BUDGET = 50
# What the step helpers change on an ActionRun (saved with update_fields).
STEP_FIELDS = [
    "status",
    "attempts",
    "input",
    "output",
    "progress",
    "error",
    "error_code",
    "wake_at",
    "waiting_on",
    "started_at",
    "finished_at",
    "updated_at",
]


CountSetting = Literal[
    "DISPATCH_BATCH_SIZE",
    "MAX_CAUSATION_DEPTH",
    "OUTBOX_GRACE_SECONDS",
    "STALE_RUN_SECONDS",
    "SWEEP_BATCH_SIZE",
]
SecondsSetting = Literal[
    "DISPATCH_COALESCE_SECONDS", "DISPATCH_INLINE_SECONDS", "WAKE_MESSAGE_MAX_SECONDS"
]


@overload
def engine_setting(name: CountSetting) -> int: ...
@overload
def engine_setting(name: SecondsSetting) -> float: ...
def engine_setting(name: CountSetting | SecondsSetting) -> float:
    """One of the engine's numeric settings (``settings.FLOWDESK``)."""
    values: Mapping[str, object] = settings.FLOWDESK
    value = values[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ImproperlyConfigured(f"FLOWDESK[{name!r}] must be a number, not {value!r}")
    return value


@functools.lru_cache(maxsize=1024)
def version_definition(version_id: int) -> dict[str, Any]:
    """A version's definition, cached: versions are immutable once written."""
    from workflows.models import WorkflowVersion

    return WorkflowVersion.objects.values_list("definition", flat=True).get(pk=version_id)


def versions_existing(ids: set[int]) -> set[int]:
    from workflows.models import WorkflowVersion

    if not ids:
        return set()
    return set(WorkflowVersion.objects.filter(pk__in=ids).values_list("pk", flat=True))


def step_definitions(run: Run) -> list[dict[str, Any]]:
    return version_definition(run.version_id).get("steps") or []


def enqueue_advance(run_id: int) -> None:
    """Advance the run in a worker once the current transaction commits (a broker that is
    down then is logged, and the stale-run sweep advances the run)."""
    from automation.tasks import advance_run, publish

    transaction.on_commit(lambda: publish(advance_run, run_id))


def enqueue_advance_now(run_id: int) -> None:
    """Advance the run in a worker (outside any transaction; never raises)."""
    from automation.tasks import advance_run, publish

    publish(advance_run, run_id)
