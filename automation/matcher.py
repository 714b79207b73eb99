"""Trigger matching.

Each process keeps an index of the published triggers of active workflows: exact event types
in a dict, ``deal.*`` patterns in a short list, conditions compiled once per version. The
index is rebuilt when the definitions generation (a counter in the shared cache, bumped after
any definition change commits) moves, so every web process and worker sees a change at its
next event. Matching costs one cache read (per event, or per batch of events) plus the
triggers of the event type.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
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

    def matches_type(self, event_type: str) -> bool:
        return type_matches(self.event_type, event_type)


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


def candidates_from_definition(workflow_id: int, version_id: int,
                               definition: dict[str, Any]) -> list[Candidate]:
    found = []
    for index, trigger in enumerate(definition.get("triggers") or []):
        if not trigger.get("is_active", True):
            continue
        conditions = trigger.get("conditions")
        found.append(Candidate(
            workflow_id=workflow_id,
            version_id=version_id,
            trigger_index=index,
            event_type=trigger["event_type"],
            priority=int(trigger.get("priority") or 0),
            condition=compile_condition(conditions) if conditions else None,
        ))
    return found


class TriggerIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: Any = object()
        self._exact: dict[str, list[Candidate]] = {}
        self._patterns: list[Candidate] = []

    def _load(self) -> None:
        from workflows.models import Workflow

        exact: dict[str, list[Candidate]] = defaultdict(list)
        patterns: list[Candidate] = []
        rows = Workflow.objects.filter(
            is_active=True, published_version__isnull=False,
        ).values_list("id", "published_version_id", "published_version__definition")
        for workflow_id, version_id, definition in rows:
            for candidate in candidates_from_definition(workflow_id, version_id, definition):
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
        found.sort(key=lambda c: (-c.priority, c.workflow_id, c.trigger_index))
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

    def match(self, event_type: str, context: dict[str, Any], *, refresh: bool = True
              ) -> list[Candidate]:
        """The first matching trigger of each workflow, highest priority first. A caller
        matching a batch of events refreshes once and passes ``refresh=False``."""
        chosen: dict[int, Candidate] = {}
        for candidate in self.candidates(event_type, refresh=refresh):
            if candidate.workflow_id in chosen:
                continue
            if candidate.condition is None or candidate.condition(context):
                chosen[candidate.workflow_id] = candidate
        return list(chosen.values())

    def reset(self) -> None:
        self._generation = object()


trigger_index = TriggerIndex()
