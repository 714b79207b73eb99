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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import transaction

from automation.conditions import CompiledCondition, compile_condition

# The definitions generation: an epoch (set when the counter is created, so a flushed
# cache is a new epoch, not an old generation again) and a counter moved by every change.
# Each move logs what changed (a workflow id, or ALL) under ``CHANGE_KEY:<counter>``.
EPOCH_KEY = "flowdesk:definitions:epoch"
COUNTER_KEY = "flowdesk:definitions:counter"
CHANGE_KEY = "flowdesk:definitions:change"
ALL = "*"
CHANGE_LOG_SECONDS = 24 * 3600
# A process further behind than this reloads everything instead of workflow by workflow.
CHANGE_LOG_READ = 200
# Distinct event types whose merged candidate lists a process keeps.
TYPE_CACHE_SIZE = 10_000


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


def definitions_changed(workflow_id: int | None = None) -> None:
    """Invalidate this process's trigger index now, and every process's once the current
    transaction commits (a process that reloads in between reloads again after commit).

    With ``workflow_id``, the other processes reload only that workflow's triggers (the
    change is logged under the generation it moves to); without, everything."""
    trigger_index.reset(workflow_id)
    transaction.on_commit(lambda: generation_bump(workflow_id))


def generation_bump(workflow_id: int | None = None) -> None:
    """Move the definitions generation one on, logging which workflow changed (``None``:
    every process reloads everything)."""
    if cache.add(COUNTER_KEY, 0, timeout=None):  # a new counter starts a new epoch
        cache.set(EPOCH_KEY, time.time_ns(), timeout=None)
    generation = cache.incr(COUNTER_KEY)
    change = ALL if workflow_id is None else int(workflow_id)
    cache.set(f"{CHANGE_KEY}:{generation}", change, timeout=CHANGE_LOG_SECONDS)


def current_generation() -> tuple[Any, int]:
    """(epoch, counter) of the definitions generation: one cache read."""
    found = cache.get_many([EPOCH_KEY, COUNTER_KEY])
    if EPOCH_KEY not in found or COUNTER_KEY not in found:
        cache.add(EPOCH_KEY, time.time_ns(), timeout=None)
        cache.add(COUNTER_KEY, 0, timeout=None)
        found = cache.get_many([EPOCH_KEY, COUNTER_KEY])
    return found.get(EPOCH_KEY), int(found.get(COUNTER_KEY) or 0)


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
    """The published triggers of active workflows, by event type.

    Exact types are a dict; ``deal.*`` patterns are a dict by prefix (``deal.``), so an event
    looks up one entry per dot of its type, whatever the number of patterns; ``*`` matches
    every event. The merged, sorted candidates of each event type are kept until the next
    change. A change to one workflow reloads only that workflow's triggers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: Any = object()
        self._exact: dict[str, list[Candidate]] = {}
        self._prefixes: dict[str, list[Candidate]] = {}
        self._patterns: list[Candidate] = []  # "*" and any other pattern
        self._by_workflow: dict[int, list[Candidate]] = {}
        self._by_type: dict[str, list[Candidate]] = {}
        # Versions known to exist since they were loaded (a version is deleted only with
        # its workflow, which moves the generation and reloads that workflow).
        self._known_versions: dict[int, set[int]] = {}
        self._known_flat: set[int] = set()
        self._dirty: set[int] = set()  # changed here, not yet committed
        self.loads = 0  # full loads, and workflow reloads (for the benchmark)
        self.workflow_reloads = 0

    def _rows(
        self, workflow_ids: set[int] | None, oldest_event: int | None = None
    ) -> list[tuple[Any, ...]]:
        """(workflow id, version id, definition, live after, retired after) of the
        published versions of active workflows and the versions retired since the oldest
        event still to dispatch; of ``workflow_ids`` only, or of all."""
        from automation.models import Event
        from workflows.models import Workflow, WorkflowVersion

        published = Workflow.objects.filter(is_active=True, published_version__isnull=False)
        if workflow_ids is not None:
            published = published.filter(pk__in=workflow_ids)
        rows = list(
            published.values_list(
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
        if oldest_event is not None:  # a batch already marked dispatched by its claim
            oldest = oldest_event if oldest is None else min(oldest, oldest_event)
        retired: Any = []
        if oldest is not None:
            retired = WorkflowVersion.objects.filter(retired_after_event__gte=oldest)
            if workflow_ids is not None:
                retired = retired.filter(workflow_id__in=workflow_ids)
            retired = retired.values_list(
                "workflow_id", "id", "definition", "live_after_event", "retired_after_event"
            )
        return [(*row, None) for row in rows] + [
            row for row in retired if row[2].get("is_active", True)
        ]

    def _install(self, rows: list[tuple[Any, ...]], workflow_ids: set[int] | None) -> None:
        """Replace the candidates of ``workflow_ids`` (None: all) by those of ``rows``.

        A partial reload touches only the lists those workflows' triggers are in (new lists
        and dicts, so a thread matching meanwhile sees the old index or the new one)."""
        loaded: dict[int, list[Candidate]] = {}
        versions: dict[int, set[int]] = {}
        for workflow_id, version_id, definition, live_after, retired_after in rows:
            versions.setdefault(workflow_id, set()).add(version_id)
            loaded.setdefault(workflow_id, []).extend(
                candidates_from_definition(
                    workflow_id,
                    version_id,
                    definition,
                    live_after_event=live_after,
                    retired_after_event=retired_after,
                )
            )
        if workflow_ids is None:
            by_workflow, known, known_flat = loaded, versions, set()
            exact: dict[str, list[Candidate]] = {}
            prefixes: dict[str, list[Candidate]] = {}
            patterns: list[Candidate] = []
            removed: list[Candidate] = []
        else:
            by_workflow, known = dict(self._by_workflow), dict(self._known_versions)
            exact, prefixes = dict(self._exact), dict(self._prefixes)
            patterns, known_flat = list(self._patterns), set(self._known_flat)
            removed = []
            for workflow_id in workflow_ids:
                removed.extend(by_workflow.pop(workflow_id, ()))
                known_flat -= known.pop(workflow_id, set())
            by_workflow.update(loaded)
            known.update(versions)
        gone = set(workflow_ids or ())
        fresh: set[tuple[int, str]] = set()  # lists made by this install: changed in place
        for candidate in removed:
            bucket, key = self._bucket(candidate, exact, prefixes)
            if bucket is not None and key in bucket and (id(bucket), key) not in fresh:
                bucket[key] = [c for c in bucket[key] if c.workflow_id not in gone]
                fresh.add((id(bucket), key))
        if gone:
            patterns = [c for c in patterns if c.workflow_id not in gone]
        for candidates in loaded.values():
            for candidate in candidates:
                bucket, key = self._bucket(candidate, exact, prefixes)
                if bucket is None:
                    patterns.append(candidate)
                    continue
                if (id(bucket), key) not in fresh:
                    bucket[key] = list(bucket.get(key, ()))
                    fresh.add((id(bucket), key))
                bucket[key].append(candidate)
        for bucket in (exact, prefixes):
            for key in [k for b, k in fresh if b == id(bucket) and not bucket.get(k, [None])]:
                del bucket[key]
        for ids in versions.values():
            known_flat |= ids
        self._exact, self._prefixes, self._patterns = exact, prefixes, patterns
        self._by_workflow, self._known_versions, self._known_flat = by_workflow, known, known_flat
        self._by_type = {}

    @staticmethod
    def _bucket(
        candidate: Candidate,
        exact: dict[str, list[Candidate]],
        prefixes: dict[str, list[Candidate]],
    ) -> tuple[dict[str, list[Candidate]] | None, str]:
        """Where a candidate is indexed: (exact, its type), (prefixes, ``deal.``), or
        (None, "") for ``*`` and other patterns."""
        pattern = candidate.event_type
        if not pattern.endswith("*"):
            return exact, pattern
        if pattern.endswith(".*"):
            return prefixes, pattern[:-1]
        return None, ""

    def _load(self, workflow_ids: set[int] | None = None, oldest_event: int | None = None) -> None:
        self._install(self._rows(workflow_ids, oldest_event), workflow_ids)
        if workflow_ids is None:
            self.loads += 1
        else:
            self.workflow_reloads += len(workflow_ids)

    def candidates(self, event_type: str, *, refresh: bool = True) -> list[Candidate]:
        if refresh:
            self.refresh()
        found = self._by_type.get(event_type)
        if found is not None:
            return found
        found = list(self._exact.get(event_type, ()))
        # ``a.b.c`` meets the patterns ``a.*`` and ``a.b.*``.
        end = event_type.find(".")
        while end >= 0:
            found.extend(self._prefixes.get(event_type[: end + 1], ()))
            end = event_type.find(".", end + 1)
        found.extend(c for c in self._patterns if c.matches_type(event_type))
        found.sort(key=rank)
        if len(self._by_type) >= TYPE_CACHE_SIZE:
            self._by_type = {}
        self._by_type[event_type] = found
        return found

    def refresh(
        self, oldest_event: int | None = None, generation: tuple[Any, int] | None = None
    ) -> None:
        """Bring the index up to the definitions generation (one cache read when nothing
        changed): the workflows logged as changed since this process's generation are
        reloaded, or everything when the log does not reach back (or says so).
        ``oldest_event``: the first event of a batch being dispatched (its claim marked it
        dispatched already), so the versions retired since it are loaded too.
        ``generation``: the current generation, when the caller has just read it (a drain
        holding the outbox doorbell reads it with the doorbell's count, a round trip
        before its claim; an edit moves the generation just after its commit, so a read
        after the claim meets the same race, a round trip later)."""
        if generation is None:
            generation = current_generation()
        if generation == self._generation and not self._dirty:
            return
        with self._lock:
            if generation == self._generation and not self._dirty:
                return
            changed = set() if generation == self._generation else self._changes_since(generation)
            if changed is not None:
                changed |= self._dirty
            self._dirty = set()
            self._load(changed, oldest_event)
            self._generation = generation

    def _changes_since(self, generation: tuple[Any, int]) -> set[int] | None:
        """The workflows changed between this process's generation and ``generation``;
        None: reload everything (another epoch, too far behind, or a change logged as
        everything, or a log entry missing)."""
        mine = self._generation
        if not isinstance(mine, tuple) or mine[0] != generation[0]:
            return None
        behind = generation[1] - mine[1]
        if behind <= 0 or behind > CHANGE_LOG_READ:
            return None
        keys = [f"{CHANGE_KEY}:{n}" for n in range(mine[1] + 1, generation[1] + 1)]
        found = cache.get_many(keys)
        if len(found) != len(keys) or ALL in found.values():
            return None
        return {int(value) for value in found.values()}

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

    def versions_existing(self, ids: set[int]) -> set[int]:
        """Which of these versions exist: those the index loaded, without a query (deleting
        one moves the generation, and the next refresh reloads its workflow), the others
        from the database."""
        from workflows.models import WorkflowVersion

        known = ids & self._known_flat
        unknown = ids - known
        if not unknown:
            return set(ids)
        found = set(WorkflowVersion.objects.filter(pk__in=unknown).values_list("pk", flat=True))
        return known | found

    def reset(self, workflow_id: int | None = None) -> None:
        """Reload at the next refresh: that workflow's triggers, or (None) everything."""
        if workflow_id is None:
            self._generation = object()
        else:
            self._dirty.add(int(workflow_id))


trigger_index = TriggerIndex()
