"""Dispatch stored events again, e.g. after adding a workflow that should see old events.

A replay never starts a second run of a workflow for the same event (runs are unique per
workflow and event), so replaying is safe: only workflows that have not run for an event
start.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from automation import services
from automation.models import Event
from automation.tasks import dispatch_event


class Command(BaseCommand):
    help = "Re-dispatch stored events matching the filters (safe: no run is started twice)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--type", help="Event type, or a prefix ending with '*'.")
        parser.add_argument("--since", help="ISO datetime: events that occurred at or after.")
        parser.add_argument("--until", help="ISO datetime: events that occurred before.")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Match and run here instead of handing the events to workers.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count the events.")

    def handle(
        self,
        *args: Any,
        type: str | None,
        since: str | None,
        until: str | None,
        inline: bool,
        dry_run: bool,
        **options: Any,
    ) -> None:
        events = Event.objects.order_by("occurred_at", "pk")
        if type:
            events = (
                events.filter(type__startswith=type[:-1])
                if type.endswith("*")
                else events.filter(type=type)
            )
        for name, value, lookup in (("since", since, "gte"), ("until", until, "lt")):
            if value:
                moment = parse_datetime(value)
                if moment is None:
                    raise CommandError(f"--{name}: not an ISO datetime: {value!r}")
                events = events.filter(**{f"occurred_at__{lookup}": moment})
        total = events.count()
        if dry_run:
            self.stdout.write(f"{total} event(s) would be replayed")
            return
        started = 0
        ids = events.values_list("pk", flat=True).iterator(chunk_size=1000)
        for event_id in tqdm(ids, total=total, unit="event", disable=total < 50):
            Event.objects.filter(pk=event_id).update(dispatched_at=None)
            if inline:
                started += len(services.event_dispatch(event_id=event_id))
            else:
                dispatch_event.delay(event_id)
        verb = f"started {started} run(s)" if inline else "handed to the workers"
        self.stdout.write(self.style.SUCCESS(f"{total} event(s) replayed; {verb}"))
