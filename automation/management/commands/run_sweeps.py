"""Run the engine's sweeps now, in this process (beat runs them on a schedule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand

from automation import services


class Command(BaseCommand):
    help = ("Run the outbox, wake-due and stale-run sweeps once. --stale-after overrides the "
            "grace period (seconds) before a running step counts as lost.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--stale-after", type=int, default=None)

    def handle(self, *args: Any, stale_after: int | None, **options: Any) -> None:
        outbox = services.outbox_redispatch()
        woken = services.runs_wake_due()
        stale = services.runs_resume_stale(
            older_than=timedelta(seconds=stale_after) if stale_after is not None else None)
        self.stdout.write(f"outbox: {outbox} event(s) re-dispatched; wake: {woken} step(s); "
                          f"stale: {stale} run(s) resumed")
