"""Writes of SLA configs: save a document (validated whole), delete, and recompute the open
tasks of an edited config (the rule is in ``tasks_inbox.sla``'s docstring)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from tasks_inbox.models import SLAConfig, Task
from tasks_inbox.sla.clock import CLOCK_FIELDS, clock_on_config_change
from tasks_inbox.sla.rules import SLAConfigInUse, SLAConfigInvalid, sla_config_clean, sla_spec

RESCHEDULE_BATCH = 1000


@transaction.atomic
def sla_config_save(*, document: dict[str, Any], config: SLAConfig | None = None) -> SLAConfig:
    """Create or replace a config from its document; every problem is reported at once
    (``SLAConfigInvalid`` with JSON paths). An edit recomputes the config's open tasks."""
    if config is not None and config.pk:
        config = SLAConfig.objects.select_for_update().get(pk=config.pk)
    values, issues = sla_config_clean(document, instance=config)
    if issues:
        raise SLAConfigInvalid.from_issues(issues)
    now = timezone.now()
    if config is None or not config.pk:
        config = SLAConfig(**values, created_at=now, updated_at=now)
        config.save(force_insert=True)
        return config
    for name, value in values.items():
        setattr(config, name, value)
    config.updated_at = now
    config.save()
    sla_config_reschedule(config=config)
    return config


def sla_config_reschedule(*, config: SLAConfig) -> int:
    """Recompute the clocks of the config's open tasks (in the caller's transaction, rows
    locked in primary-key order, in batches); returns how many were looked at."""
    spec = sla_spec(config)
    now = timezone.now()
    last_pk, seen = 0, 0
    while True:
        tasks = list(
            Task.objects.select_for_update()
            .filter(
                sla_config=config,
                is_open=True,
                pk__gt=last_pk,
            )
            .order_by("pk")[:RESCHEDULE_BATCH]
        )
        if not tasks:
            return seen
        for task in tasks:
            task.sla_config = config
            clock_on_config_change(task, spec, now)
        Task.objects.bulk_update(tasks, [f for f in CLOCK_FIELDS if f != "sla_config"])
        seen += len(tasks)
        last_pk = tasks[-1].pk


@transaction.atomic
def sla_config_delete(*, config: SLAConfig) -> None:
    """Delete a config no task uses (otherwise ``SLAConfigInUse``: deactivate it)."""
    if Task.objects.filter(sla_config=config).exists():
        raise SLAConfigInUse(
            f"{Task.objects.filter(sla_config=config).count()} task(s) use "
            f"the SLA '{config.name}'; deactivate it instead."
        )
    config.delete()
