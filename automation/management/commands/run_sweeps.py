"""Run the engine's sweeps now, in this process (beat runs them on a schedule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from automation import services

ENGINE_SWEEPS = {"flowdesk.sweep.outbox", "flowdesk.sweep.wake_due", "flowdesk.sweep.stale_runs"}


def other_sweeps() -> list[str]:
    """The sweep tasks other apps schedule in ``CELERY_BEAT_SCHEDULE`` (the SLA sweep), by
    name: the engine does not import the apps that define them."""
    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    return sorted(
        name for name in names if name.startswith("flowdesk.sweep.") and name not in ENGINE_SWEEPS
    )


class Command(BaseCommand):
    help = (
        "Run the outbox, wake-due and stale-run sweeps once, then the other scheduled "
        "sweeps (the SLA sweep). --stale-after overrides the grace period (seconds) "
        "before a running step counts as lost."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--stale-after", type=int, default=None)

    def handle(self, *args: Any, stale_after: int | None, **options: Any) -> None:
        from config.celery import app

        outbox = services.outbox_redispatch()
        woken = services.runs_wake_due()
        stale = services.runs_resume_stale(
            older_than=timedelta(seconds=stale_after) if stale_after is not None else None
        )
        self.stdout.write(
            f"outbox: {outbox} event(s) re-dispatched; wake: {woken} step(s); "
            f"stale: {stale} run(s) resumed"
        )
        app.loader.import_default_modules()  # the apps' tasks modules (autodiscovered)
        for name in other_sweeps():
            result = app.tasks[name]()  # in this process, as beat's worker would
            self.stdout.write(f"{name.removeprefix('flowdesk.sweep.')}: {result}")
