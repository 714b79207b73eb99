"""Trigger matching.

Each process keeps an index of the published triggers of active workflows: exact event types
in a dict, ``deal.*`` patterns in a short list, conditions compiled once per version. The
index is rebuilt when the definitions generation (a counter in the shared cache, bumped after
any definition change commits) moves, so every web process and worker sees a change at its
next event. Matching costs one cache read (per event, or per batch of events) plus the
triggers of the event type.

An event meets the workflows that were live when it was written, not when it is dispatched:
each version has a live window in event ids (``live_after_event``, ``retired_after_event``,
set by publishing from ``event_high_water``), and the index also holds the versions retired
since the oldest event still waiting in the outbox. So with a backlog (a stopped worker), a
workflow published after an event does not start for it, and one switched off after it
does.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import transaction

from automation.conditions import CompiledCondition, compile_condition

GENERATION_KEY = "flowdesk:definitions:generation"


@dataclass(frozen=True)
class Candidate:
    workflow_id: int
    version_id: int
    trigger_index: int
    event_type: str
    priority: int
    condition: CompiledCondition | None
    live_after_event: int | None = None
    retired_after_event: int | None = None

    def matches_type(self, event_type: str) -> bool:
        return type_matches(self.event_type, event_type)

    def live_for(self, event_id: int | None) -> bool:
        """Whether the version was current when event ``event_id`` was written (None: an
        event being written now, which meets the current versions only)."""
        if event_id is None:
            return self.retired_after_event is None
        return (self.live_after_event is None or event_id > self.live_after_event) and (
            self.retired_after_event is None or event_id <= self.retired_after_event
        )


def event_high_water() -> int:
    """The id of the latest event written: events after it meet what is published now."""
    from automation.models import Event

    return Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def type_matches(pattern: str, event_type: str) -> bool:
    """``deal.*`` matches ``deal.created`` and ``deal.stage_changed``; ``*`` matches all."""
    if pattern == event_type or pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return False


def definitions_changed() -> None:
    """Invalidate this process's trigger index now, and every process's once the current
    transaction commits (a process that reloads in between reloads again after commit)."""
    trigger_index.reset()
    transaction.on_commit(lambda: cache.set(GENERATION_KEY, time.time_ns(), timeout=None))


def candidates_from_definition(
    workflow_id: int,
    version_id: int,
    definition: dict[str, Any],
    *,
    live_after_event: int | None = None,
    retired_after_event: int | None = None,
) -> list[Candidate]:
    found = []
    for index, trigger in enumerate(definition.get("triggers") or []):
        if not trigger.get("is_active", True):
            continue
        conditions = trigger.get("conditions")
        found.append(
            Candidate(
                workflow_id=workflow_id,
                version_id=version_id,
                trigger_index=index,
                event_type=trigger["event_type"],
                priority=int(trigger.get("priority") or 0),
                condition=compile_condition(conditions) if conditions else None,
                live_after_event=live_after_event,
                retired_after_event=retired_after_event,
            )
        )
    return found


def rank(candidate: Candidate) -> tuple[int, int, int]:
    """The order triggers are tried in: highest priority first, then workflow, position."""
    return (-candidate.priority, candidate.workflow_id, candidate.trigger_index)


def first_matches(
    ranked: Iterable[Candidate], context: dict[str, Any], *, event_id: int | None = None
) -> list[Candidate]:
    """The first trigger of each workflow, in ``ranked`` order (see :func:`rank`), that was
    live for event ``event_id`` and whose condition holds. The index matches with this, and
    so does the dry run (``workflows.simulation``) over one definition's candidates."""
    chosen: dict[int, Candidate] = {}
    for candidate in ranked:
        if candidate.workflow_id in chosen or not candidate.live_for(event_id):
            continue
        if candidate.condition is None or candidate.condition(context):
            chosen[candidate.workflow_id] = candidate
    return list(chosen.values())


class TriggerIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: Any = object()
        self._exact: dict[str, list[Candidate]] = {}
        self._patterns: list[Candidate] = []

    def _load(self) -> None:
        from automation.models import Event
        from workflows.models import Workflow, WorkflowVersion

        exact: dict[str, list[Candidate]] = defaultdict(list)
        patterns: list[Candidate] = []
        rows = list(
            Workflow.objects.filter(
                is_active=True,
                published_version__isnull=False,
            ).values_list(
                "id",
                "published_version_id",
                "published_version__definition",
                "published_version__live_after_event",
            )
        )
        # Versions retired since the oldest event still to dispatch: that event, and the
        # others written while they were current, still meet them.
        oldest = (
            Event.objects.filter(dispatched_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        retired = (
            WorkflowVersion.objects.filter(
                retired_after_event__gte=oldest,
            ).values_list(
                "workflow_id", "id", "definition", "live_after_event", "retired_after_event"
            )
            if oldest is not None
            else []
        )
        loaded = [(*row, None) for row in rows] + [
            row for row in retired if row[2].get("is_active", True)
        ]
        for workflow_id, version_id, definition, live_after, retired_after in loaded:
            for candidate in candidates_from_definition(
                workflow_id,
                version_id,
                definition,
                live_after_event=live_after,
                retired_after_event=retired_after,
            ):
                if candidate.event_type.endswith("*"):
                    patterns.append(candidate)
                else:
                    exact[candidate.event_type].append(candidate)
        self._exact = dict(exact)
        self._patterns = patterns

    def candidates(self, event_type: str, *, refresh: bool = True) -> list[Candidate]:
        if refresh:
            self.refresh()
        found = list(self._exact.get(event_type, ()))
        found.extend(c for c in self._patterns if c.matches_type(event_type))
        found.sort(key=rank)
        return found

    def refresh(self) -> None:
        """Reload the index if the definitions generation moved (one cache read)."""
        generation = cache.get(GENERATION_KEY)
        if generation is None:
            generation = time.time_ns()
            cache.add(GENERATION_KEY, generation, timeout=None)
            generation = cache.get(GENERATION_KEY, generation)
        if generation != self._generation:
            with self._lock:
                if generation != self._generation:
                    self._load()
                    self._generation = generation

    def match(
        self,
        event_type: str,
        context: dict[str, Any],
        *,
        refresh: bool = True,
        event_id: int | None = None,
    ) -> list[Candidate]:
        """The first matching trigger of each workflow, highest priority first, among the
        versions that were current when event ``event_id`` was written (None: now). A
        caller matching a batch of events refreshes once and passes ``refresh=False``."""
        return first_matches(
            self.candidates(event_type, refresh=refresh), context, event_id=event_id
        )

    def reset(self) -> None:
        self._generation = object()


trigger_index = TriggerIndex()
