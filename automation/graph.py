"""The step graph of a workflow: dependencies, validation and scheduling decisions.

Pure functions over plain data, no database: the runtime asks them which steps to start,
which can never start, and whether a run is over.

Steps are dicts in a list, in definition order::

    [{"key": "qualify", "type": "update_field"},
     {"key": "notify", "type": "send_notification"},
     {"key": "audit", "type": "add_note", "after": []},
     {"key": "follow_up", "type": "create_task", "after": ["notify", "audit"],
      "allow_failure": True}]

``after`` lists the keys a step waits for:

- absent (or ``null``): the previous step in list order, so a plain list runs in order;
  the first step waits for nothing;
- ``[]``: nothing, the step runs at the start, in parallel with the other roots;
- ``["a", "b"]``: both ``a`` and ``b`` (a join); keys may name later steps too.

A dependency is *satisfied* when its step is ``completed`` or ``skipped``, or ``failed``
with ``allow_failure`` true. A step is *ready* when it is ``pending`` and every dependency
is satisfied. A ``pending`` step is *blocked* (it can never run) when a dependency failed
without ``allow_failure``, was ``cancelled``, or is blocked itself. A failure does not stop
independent branches: they keep running, and the run fails once nothing can run any more.

The functions taking ``deps`` expect the output of :func:`dependencies` on steps that
:func:`validate_graph` accepted (unique keys, known dependencies, no cycle).
"""

from __future__ import annotations

import difflib
import functools
import graphlib
import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from automation.statuses import StepStatus
from config.issues import Issue

__all__ = [
    "KEY_PATTERN",
    "GraphError",
    "GraphIssue",
    "GraphIssueCode",
    "Plan",
    "RunOutcome",
    "StepStatus",
    "blocked_reasons",
    "blocked_steps",
    "dependencies",
    "plan",
    "ready_steps",
    "run_outcome",
    "topological_order",
    "validate_graph",
]

KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A step key: a lowercase ASCII letter, then up to 63 lowercase letters, digits or ``_``
(matched with ``fullmatch``)."""

Deps = Mapping[str, Sequence[str]]


class RunOutcome(StrEnum):
    """What :func:`run_outcome` decides once a run has nothing left to do."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class GraphIssueCode(StrEnum):
    """Stable machine-readable codes of graph validation issues."""

    INVALID_STEPS = "INVALID_STEPS"
    INVALID_STEP = "INVALID_STEP"
    MISSING_KEY = "MISSING_KEY"
    EMPTY_KEY = "EMPTY_KEY"
    INVALID_KEY = "INVALID_KEY"
    DUPLICATE_KEY = "DUPLICATE_KEY"
    INVALID_AFTER = "INVALID_AFTER"
    DUPLICATE_DEPENDENCY = "DUPLICATE_DEPENDENCY"
    UNKNOWN_STEP = "UNKNOWN_STEP"
    SELF_REFERENCE = "SELF_REFERENCE"
    CYCLE = "CYCLE"


# One problem in a step graph: the JSON path it is at, a stable code and a message.
GraphIssue = Issue


class GraphError(ValueError):
    """Raised when a function is given a graph that :func:`validate_graph` would reject."""


_STATUSES = frozenset(StepStatus)
_ACTIVE = frozenset({StepStatus.RUNNING, StepStatus.WAITING})
_DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})


# --------------------------------------------------------------------------- structure


def dependencies(steps: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Map each step key to the keys it waits for, in definition order, defaults applied.

    An absent or ``null`` ``after`` means the previous step in list order (nothing for the
    first step); ``[]`` means nothing. Repeated entries in ``after`` are kept once. The
    steps must have passed :func:`validate_graph`; a missing or repeated key raises
    :class:`GraphError`.
    """
    deps: dict[str, list[str]] = {}
    previous: str | None = None
    for index, step in enumerate(steps):
        key = step.get("key")
        if not isinstance(key, str) or not key:
            raise GraphError(f"steps[{index}] has no key; run validate_graph() first")
        if key in deps:
            raise GraphError(f"duplicate step key {key!r}; run validate_graph() first")
        after = step.get("after")
        if after is None:
            deps[key] = [] if previous is None else [previous]
        else:
            deps[key] = list(dict.fromkeys(after))
        previous = key
    return deps


def validate_graph(steps: object, path: str = "steps") -> list[GraphIssue]:
    """Return every structural issue of a step list (an empty list when it is valid).

    Checks, each issue naming its JSON path:

    - ``steps`` is a list and each step an object (``invalid_steps``, ``invalid_step``);
    - each key is present, a non-empty string matching :data:`KEY_PATTERN` and unique
      (``missing_key``, ``empty_key``, ``invalid_key``, and ``duplicate_key`` on the later
      step: ``steps[3].key: duplicate key 'notify'``);
    - ``after`` is absent, ``null`` or a list of strings (``invalid_after``), each naming
      another existing step (``unknown_step``: ``steps[2].after[0]: unknown step 'nope'``;
      ``self_reference``), listed once (``duplicate_dependency``);
    - the graph is acyclic (``cycle``). One issue per strongly connected group of steps,
      at ``steps[i].after`` of its first step in definition order, naming a shortest
      cycle through it in execution order: ``cycle: a -> b -> a`` means ``b`` waits for
      ``a`` and ``a`` waits for ``b``. A step waiting for itself is reported only as
      ``self_reference``.

    An empty list is valid: a workflow without steps has nothing to run and its runs
    complete at once (see :func:`run_outcome`). Whether a workflow *should* have steps
    is a rule of the definition, not of the graph.
    """
    if not isinstance(steps, list):
        return [GraphIssue(path, GraphIssueCode.INVALID_STEPS, "steps must be a list")]
    issues: list[GraphIssue] = []
    keys = _validate_keys(steps, path, issues)
    index_of = {key: index for index, key in enumerate(keys) if key is not None}
    edges: list[list[int]] = [[] for _ in steps]  # step index -> indexes it waits for
    for index, step in enumerate(steps):
        if isinstance(step, Mapping):
            edges[index] = _validate_after(step, index, keys, index_of, path, issues)
    issues.extend(_cycle_issues(keys, edges, path))
    return issues


def _validate_keys(steps: list[Any], path: str, issues: list[GraphIssue]) -> list[str | None]:
    """Check each step's key; return the usable key of each position (``None`` if not)."""
    keys: list[str | None] = []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        step_path = f"{path}[{index}]"
        keys.append(None)
        if not isinstance(step, Mapping):
            issues.append(
                GraphIssue(step_path, GraphIssueCode.INVALID_STEP, "step must be an object")
            )
            continue
        key_path = f"{step_path}.key"
        key = step.get("key")
        if key is None:
            issues.append(GraphIssue(key_path, GraphIssueCode.MISSING_KEY, "key is required"))
        elif not isinstance(key, str):
            issues.append(GraphIssue(key_path, GraphIssueCode.INVALID_KEY, "key must be a string"))
        elif not key.strip():
            issues.append(GraphIssue(key_path, GraphIssueCode.EMPTY_KEY, "key must not be empty"))
        elif not KEY_PATTERN.fullmatch(key):
            issues.append(
                GraphIssue(
                    key_path,
                    GraphIssueCode.INVALID_KEY,
                    f"invalid key {key!r}: use a lowercase letter, then up to 63 lowercase "
                    "letters, digits or underscores",
                )
            )
        elif key in seen:
            issues.append(
                GraphIssue(key_path, GraphIssueCode.DUPLICATE_KEY, f"duplicate key {key!r}")
            )
        else:
            seen.add(key)
            keys[index] = key
    return keys


def _validate_after(
    step: Mapping[str, Any],
    index: int,
    keys: list[str | None],
    index_of: dict[str, int],
    path: str,
    issues: list[GraphIssue],
) -> list[int]:
    """Check one step's ``after``; return the indexes of the valid dependencies."""
    after = step.get("after")
    if after is None:
        previous = keys[index - 1] if index > 0 else None
        return [index - 1] if previous is not None else []
    after_path = f"{path}[{index}].after"
    if not isinstance(after, list):
        issues.append(
            GraphIssue(
                after_path,
                GraphIssueCode.INVALID_AFTER,
                'after must be a list of step keys, e.g. ["review"]',
            )
        )
        return []
    own_key = step.get("key")
    result: list[int] = []
    listed: set[str] = set()
    for position, name in enumerate(after):
        item_path = f"{after_path}[{position}]"
        if not isinstance(name, str):
            issues.append(
                GraphIssue(item_path, GraphIssueCode.INVALID_AFTER, "must be a step key (a string)")
            )
        elif name == own_key:
            issues.append(
                GraphIssue(
                    item_path,
                    GraphIssueCode.SELF_REFERENCE,
                    f"step {name!r} cannot wait for itself",
                )
            )
        elif name in listed:
            issues.append(
                GraphIssue(
                    item_path,
                    GraphIssueCode.DUPLICATE_DEPENDENCY,
                    f"step {name!r} is listed more than once",
                )
            )
        elif name not in index_of:
            close = difflib.get_close_matches(name, list(index_of), n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            issues.append(
                GraphIssue(item_path, GraphIssueCode.UNKNOWN_STEP, f"unknown step {name!r}{hint}")
            )
        else:
            result.append(index_of[name])
        if isinstance(name, str):
            listed.add(name)
    return result


def _cycle_issues(keys: list[str | None], edges: list[list[int]], path: str) -> list[GraphIssue]:
    """One ``cycle`` issue per strongly connected component of two or more steps, naming a
    shortest cycle through its first step, in execution order."""
    import networkx as nx  # authoring-time only: workers that never validate skip the import

    runs_before = nx.DiGraph()  # an edge runs from a step to each step that waits for it
    runs_before.add_nodes_from(range(len(keys)))
    runs_before.add_edges_from(
        (dependency, index) for index, waits_for in enumerate(edges) for dependency in waits_for
    )
    issues: list[GraphIssue] = []
    for component in sorted(nx.strongly_connected_components(runs_before), key=min):
        if len(component) < 2:
            continue
        start = min(component)
        inside = runs_before.subgraph(component)
        cycle = min(
            ([start, *nx.shortest_path(inside, successor, start)] for successor in inside[start]),
            key=len,
        )
        names = " -> ".join(str(keys[index]) for index in cycle)
        issues.append(GraphIssue(f"{path}[{start}].after", GraphIssueCode.CYCLE, f"cycle: {names}"))
    return issues


def topological_order(deps: Deps) -> list[str]:
    """Return every key so that each comes after the keys it waits for.

    Stable: whenever several steps could come next, the earliest in definition order
    does, so a list that is already in a valid order comes back unchanged. Raises
    :class:`GraphError` for an unknown dependency or a cycle.
    """
    # Cached by the graph's shape: the engine plans the same few graphs at every step.
    return list(_topological_order(tuple((key, tuple(waits)) for key, waits in deps.items())))


@functools.lru_cache(maxsize=512)
def _topological_order(shape: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, ...]:
    deps = dict(shape)
    index_of = {key: index for index, key in enumerate(deps)}
    for key, waits_for in deps.items():
        for dependency in waits_for:
            if dependency not in index_of:
                raise GraphError(f"step {key!r} waits for unknown step {dependency!r}")
    sorter = graphlib.TopologicalSorter({key: set(waits_for) for key, waits_for in deps.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        stuck = sorted(set(exc.args[1]), key=index_of.__getitem__)
        raise GraphError(f"the steps contain a cycle among: {', '.join(stuck)}") from None
    ready: list[tuple[int, str]] = []
    order: list[str] = []
    while sorter.is_active():
        for key in sorter.get_ready():
            heapq.heappush(ready, (index_of[key], key))
        _, key = heapq.heappop(ready)
        order.append(key)
        sorter.done(key)
    return tuple(order)


# --------------------------------------------------------------------------- scheduling


def _status_of(statuses: Mapping[str, str], key: str) -> str:
    status = statuses.get(key, StepStatus.PENDING)
    if status not in _STATUSES:
        raise ValueError(f"step {key!r} has unknown status {status!r}")
    return status


def _satisfied(key: str, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]) -> bool:
    status = _status_of(statuses, key)
    return status in _DONE or (status == StepStatus.FAILED and bool(allow_failure.get(key, False)))


def _hard_failed(key: str, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]) -> bool:
    return _status_of(statuses, key) == StepStatus.FAILED and not allow_failure.get(key, False)


def ready_steps(
    deps: Deps, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]
) -> list[str]:
    """Return the steps that may start now, in definition order.

    A step is ready when its status is ``pending`` and every step it waits for is
    ``completed``, ``skipped``, or ``failed`` with ``allow_failure`` true. A key missing
    from ``statuses`` counts as ``pending``, one missing from ``allow_failure`` as false;
    an unknown status raises ``ValueError``.
    """
    return [
        key
        for key, waits_for in deps.items()
        if _status_of(statuses, key) == StepStatus.PENDING
        and all(_satisfied(dependency, statuses, allow_failure) for dependency in waits_for)
    ]


def blocked_steps(
    deps: Deps, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]
) -> list[str]:
    """Return the pending steps that can never run, in definition order.

    A pending step is blocked when a step it waits for failed without ``allow_failure``,
    was ``cancelled``, or is itself blocked (so blocking is transitive: everything
    downstream of a hard failure is returned at once and can be marked ``cancelled``).
    """
    blocked: set[str] = set()
    for key in topological_order(deps):
        if _status_of(statuses, key) != StepStatus.PENDING:
            continue
        for dependency in deps[key]:
            if (
                dependency in blocked
                or _hard_failed(dependency, statuses, allow_failure)
                or _status_of(statuses, dependency) == StepStatus.CANCELLED
            ):
                blocked.add(key)
                break
    return [key for key in deps if key in blocked]


def run_outcome(
    deps: Deps, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]
) -> str | None:
    """Decide whether a run is over and how it ended.

    Returns ``None`` while the run is in progress: some step is ``running`` or
    ``waiting``, or some ``pending`` step is not blocked (it is ready, or will be once
    the steps before it finish). Otherwise every step is settled (in a final status, or
    pending but blocked) and the result is:

    - ``"failed"`` when some step failed without ``allow_failure``;
    - ``"cancelled"`` when no step failed that way but some step was ``cancelled``
      (an operator or a cancelled task stopped it), so it and the steps blocked behind
      it never ran;
    - ``"completed"`` otherwise: every step is ``completed``, ``skipped`` or ``failed``
      with ``allow_failure``. A run without steps is ``"completed"``.

    Blocked steps may still be ``pending`` here; the caller marks them ``cancelled``
    (see :func:`blocked_steps`), which does not change the outcome.
    """
    current = {key: _status_of(statuses, key) for key in deps}
    if any(status in _ACTIVE for status in current.values()):
        return None
    blocked = set(blocked_steps(deps, statuses, allow_failure))
    if any(status == StepStatus.PENDING and key not in blocked for key, status in current.items()):
        return None
    if any(_hard_failed(key, statuses, allow_failure) for key in deps):
        return RunOutcome.FAILED.value
    if any(status == StepStatus.CANCELLED for status in current.values()):
        return RunOutcome.CANCELLED.value
    return RunOutcome.COMPLETED.value


def blocked_reasons(
    deps: Deps, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]
) -> dict[str, str]:
    """The steps :func:`blocked_steps` returns, each with why, naming the first step it
    waits for that stops it: ``"upstream 'bad' failed"``, ``"upstream 'x' was
    cancelled"`` (a blocked step counts as cancelled: it is cancelled in the same go)."""
    blocked = blocked_steps(deps, statuses, allow_failure)
    cancelled = set(blocked)
    reasons: dict[str, str] = {}
    for key in blocked:
        for dependency in deps[key]:
            if _hard_failed(dependency, statuses, allow_failure):
                reasons[key] = f"upstream '{dependency}' failed"
                break
            if dependency in cancelled or _status_of(statuses, dependency) == StepStatus.CANCELLED:
                reasons[key] = f"upstream '{dependency}' was cancelled"
                break
    return reasons


@dataclass(frozen=True)
class Plan:
    """One planning decision over a run's step statuses (see :func:`plan`)."""

    cancel: dict[str, str]  # pending steps that can never run -> why
    outcome: str | None  # how the run ended, or None while it goes on
    ready: list[str]  # the steps to start now, in definition order


def plan(deps: Deps, statuses: Mapping[str, str], allow_failure: Mapping[str, bool]) -> Plan:
    """What a run does next: the blocked steps to cancel (with why), then, with those
    cancelled, whether the run is over and which steps are ready.

    The engine (``automation.services.advance``) and the dry run
    (``workflows.simulation``) both decide with this, so they cannot drift apart.
    """
    cancel = blocked_reasons(deps, statuses, allow_failure)
    current = {**statuses, **dict.fromkeys(cancel, StepStatus.CANCELLED)}
    outcome = run_outcome(deps, current, allow_failure)
    ready = [] if outcome is not None else ready_steps(deps, current, allow_failure)
    return Plan(cancel=cancel, outcome=outcome, ready=ready)
