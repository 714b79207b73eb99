"""Step graph: dependencies, validation messages and scheduling decisions (no database)."""

from __future__ import annotations

import graphlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automation.graph import (
    GraphError,
    GraphIssue,
    blocked_steps,
    dependencies,
    ready_steps,
    run_outcome,
    topological_order,
    validate_graph,
)


def step(key: str, **extra: object) -> dict[str, object]:
    return {"key": key, "type": "add_note", **extra}


def messages(steps: object) -> list[str]:
    return [str(issue) for issue in validate_graph(steps)]


NO_FAILURES: dict[str, bool] = {}


# --------------------------------------------------------------------------- dependencies


def test_linear_list_waits_for_the_previous_step() -> None:
    steps = [step("qualify"), step("notify"), step("follow_up")]

    assert validate_graph(steps) == []
    assert dependencies(steps) == {"qualify": [], "notify": ["qualify"], "follow_up": ["notify"]}
    assert topological_order(dependencies(steps)) == ["qualify", "notify", "follow_up"]


def test_explicit_empty_after_runs_at_start_in_parallel() -> None:
    steps = [step("a"), step("b", after=[]), step("c", after=[])]
    deps = dependencies(steps)

    assert deps == {"a": [], "b": [], "c": []}
    assert ready_steps(deps, {}, NO_FAILURES) == ["a", "b", "c"]


def test_default_after_follows_list_order_even_after_an_explicit_step() -> None:
    steps = [step("a"), step("b", after=[]), step("c")]

    assert dependencies(steps) == {"a": [], "b": [], "c": ["b"]}


def test_null_after_means_the_default() -> None:
    assert dependencies([step("a"), step("b", after=None)]) == {"a": [], "b": ["a"]}


def test_after_may_name_a_later_step() -> None:
    steps = [step("report", after=["collect"]), step("collect", after=[])]

    assert validate_graph(steps) == []
    assert topological_order(dependencies(steps)) == ["collect", "report"]


def test_dependencies_refuses_unvalidated_steps() -> None:
    with pytest.raises(GraphError, match="duplicate step key 'a'"):
        dependencies([step("a"), step("a")])
    with pytest.raises(GraphError, match="no key"):
        dependencies([{"type": "add_note"}])


def test_empty_workflow_is_valid_and_completes_at_once() -> None:
    assert validate_graph([]) == []
    assert dependencies([]) == {}
    assert topological_order({}) == []
    assert ready_steps({}, {}, NO_FAILURES) == []
    assert run_outcome({}, {}, NO_FAILURES) == "completed"


# --------------------------------------------------------------------------- diamond


DIAMOND = [
    step("start"),
    step("left", after=["start"]),
    step("right", after=["start"]),
    step("join", after=["left", "right"]),
]


def test_diamond_runs_branches_in_parallel_and_joins() -> None:
    deps = dependencies(DIAMOND)
    statuses = {"start": "pending", "left": "pending", "right": "pending", "join": "pending"}

    assert ready_steps(deps, statuses, NO_FAILURES) == ["start"]

    statuses["start"] = "completed"
    assert ready_steps(deps, statuses, NO_FAILURES) == ["left", "right"]

    statuses["left"] = "completed"
    statuses["right"] = "running"
    assert ready_steps(deps, statuses, NO_FAILURES) == []
    assert run_outcome(deps, statuses, NO_FAILURES) is None

    statuses["right"] = "completed"
    assert ready_steps(deps, statuses, NO_FAILURES) == ["join"]

    statuses["join"] = "completed"
    assert run_outcome(deps, statuses, NO_FAILURES) == "completed"


def test_topological_order_is_stable() -> None:
    deps = {"d": ["b", "c"], "c": [], "b": ["a"], "a": []}

    assert topological_order(deps) == ["c", "a", "b", "d"]
    assert topological_order(dependencies(DIAMOND)) == ["start", "left", "right", "join"]


def test_topological_order_refuses_cycles_and_unknown_keys() -> None:
    with pytest.raises(GraphError, match="cycle among: a, b"):
        topological_order({"a": ["b"], "b": ["a"], "c": []})
    with pytest.raises(GraphError, match="unknown step 'x'"):
        topological_order({"a": ["x"]})


# --------------------------------------------------------------------------- statuses


def test_skipped_dependency_lets_downstream_run() -> None:
    deps = dependencies([step("a"), step("b"), step("c")])
    statuses = {"a": "skipped", "b": "pending", "c": "pending"}

    assert ready_steps(deps, statuses, NO_FAILURES) == ["b"]
    assert blocked_steps(deps, statuses, NO_FAILURES) == []

    statuses["b"] = "skipped"
    assert ready_steps(deps, statuses, NO_FAILURES) == ["c"]

    statuses["c"] = "skipped"
    assert run_outcome(deps, statuses, NO_FAILURES) == "completed"


def test_allow_failure_lets_downstream_run_and_run_completes() -> None:
    deps = dependencies([step("a"), step("b"), step("c")])
    allow = {"b": True}
    statuses = {"a": "completed", "b": "failed", "c": "pending"}

    assert ready_steps(deps, statuses, allow) == ["c"]
    assert blocked_steps(deps, statuses, allow) == []
    assert run_outcome(deps, statuses, allow) is None

    statuses["c"] = "completed"
    assert run_outcome(deps, statuses, allow) == "completed"


def test_failure_blocks_everything_downstream_and_fails_the_run() -> None:
    deps = dependencies([step("a"), step("b"), step("c"), step("d")])
    statuses = {"a": "completed", "b": "failed", "c": "pending", "d": "pending"}

    assert ready_steps(deps, statuses, NO_FAILURES) == []
    assert blocked_steps(deps, statuses, NO_FAILURES) == ["c", "d"]
    assert run_outcome(deps, statuses, NO_FAILURES) == "failed"

    statuses.update(c="cancelled", d="cancelled")
    assert run_outcome(deps, statuses, NO_FAILURES) == "failed"


def test_failure_does_not_stop_an_independent_branch() -> None:
    deps = dependencies(DIAMOND)
    statuses = {"start": "completed", "left": "failed", "right": "pending", "join": "pending"}

    assert ready_steps(deps, statuses, NO_FAILURES) == ["right"]
    assert blocked_steps(deps, statuses, NO_FAILURES) == ["join"]
    assert run_outcome(deps, statuses, NO_FAILURES) is None

    statuses["right"] = "waiting"
    assert run_outcome(deps, statuses, NO_FAILURES) is None

    statuses["right"] = "completed"
    assert run_outcome(deps, statuses, NO_FAILURES) == "failed"


def test_cancelled_step_blocks_downstream_and_cancels_the_run() -> None:
    deps = dependencies([step("review"), step("publish")])
    statuses = {"review": "cancelled", "publish": "pending"}

    assert blocked_steps(deps, statuses, NO_FAILURES) == ["publish"]
    assert run_outcome(deps, statuses, NO_FAILURES) == "cancelled"


def test_allow_failure_of_the_dependency_not_of_the_waiting_step_counts() -> None:
    deps = dependencies([step("a"), step("b")])
    statuses = {"a": "failed", "b": "pending"}

    assert blocked_steps(deps, statuses, {"b": True}) == ["b"]
    assert ready_steps(deps, statuses, {"a": True}) == ["b"]


def test_missing_status_counts_as_pending_and_unknown_status_is_refused() -> None:
    deps = dependencies([step("a"), step("b")])

    assert ready_steps(deps, {"a": "completed"}, NO_FAILURES) == ["b"]
    with pytest.raises(ValueError, match="unknown status 'done'"):
        ready_steps(deps, {"a": "done"}, NO_FAILURES)


def test_in_progress_until_nothing_is_running_or_waiting() -> None:
    deps = dependencies([step("a", after=[]), step("b", after=[])])

    assert run_outcome(deps, {"a": "completed", "b": "running"}, NO_FAILURES) is None
    assert run_outcome(deps, {"a": "completed", "b": "waiting"}, NO_FAILURES) is None
    assert run_outcome(deps, {"a": "failed", "b": "running"}, NO_FAILURES) is None
    assert run_outcome(deps, {"a": "completed", "b": "pending"}, NO_FAILURES) is None
    assert run_outcome(deps, {"a": "failed", "b": "completed"}, NO_FAILURES) == "failed"


# --------------------------------------------------------------------------- validation


def test_cycle_of_length_one_is_a_self_reference() -> None:
    issues = validate_graph([step("a", after=["a"])])

    assert issues == [
        GraphIssue("steps[0].after[0]", "SELF_REFERENCE", "step 'a' cannot wait for itself")
    ]


def test_cycle_of_length_two() -> None:
    steps = [step("a", after=["b"]), step("b")]

    assert validate_graph(steps) == [GraphIssue("steps[0].after", "CYCLE", "cycle: a -> b -> a")]


def test_cycle_of_length_three_is_named_in_execution_order() -> None:
    # b waits for a, c waits for b, a waits for c: a -> b -> c -> a.
    steps = [step("intro", after=[]), step("a", after=["c"]), step("b"), step("c")]

    assert messages(steps) == ["steps[1].after: cycle: a -> b -> c -> a"]


def test_cycle_reported_at_its_first_step_even_if_listed_late() -> None:
    steps = [step("x"), step("y", after=["z"]), step("z", after=["y"])]

    assert messages(steps) == ["steps[1].after: cycle: y -> z -> y"]


def test_each_independent_cycle_is_reported_once() -> None:
    steps = [
        step("a", after=["b"]),
        step("b", after=["a"]),
        step("c", after=["d"]),
        step("d", after=["c"]),
        step("e", after=["a", "c"]),
    ]

    assert messages(steps) == [
        "steps[0].after: cycle: a -> b -> a",
        "steps[2].after: cycle: c -> d -> c",
    ]


def test_entangled_cycles_report_the_shortest_through_the_first_step() -> None:
    steps = [step("a", after=["c"]), step("b", after=["a"]), step("c", after=["b", "a"])]

    assert messages(steps) == ["steps[0].after: cycle: a -> c -> a"]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ({"key": "a"}, ["steps: steps must be a list"]),
        (["a"], ["steps[0]: step must be an object"]),
        ([{"type": "add_note"}], ["steps[0].key: key is required"]),
        ([step("")], ["steps[0].key: key must not be empty"]),
        ([step("  ")], ["steps[0].key: key must not be empty"]),
        ([step(7)], ["steps[0].key: key must be a string"]),  # type: ignore[arg-type]
        (
            [step("Qualify")],
            [
                "steps[0].key: invalid key 'Qualify': use a lowercase letter, then up to 63 "
                "lowercase letters, digits or underscores"
            ],
        ),
        (
            [step("1st")],
            [
                "steps[0].key: invalid key '1st': use a lowercase letter, then up to 63 "
                "lowercase letters, digits or underscores"
            ],
        ),
        (
            [step("a" * 65)],
            [
                f"steps[0].key: invalid key '{'a' * 65}': use a lowercase letter, then up to 63 "
                "lowercase letters, digits or underscores"
            ],
        ),
        (
            [step("a"), step("notify"), step("b"), step("notify")],
            ["steps[3].key: duplicate key 'notify'"],
        ),
        (
            [step("a", after="b"), step("b")],
            ['steps[0].after: after must be a list of step keys, e.g. ["review"]'],
        ),
        ([step("a"), step("b", after=[1])], ["steps[1].after[0]: must be a step key (a string)"]),
        (
            [step("a"), step("b"), step("c", after=["nope"])],
            ["steps[2].after[0]: unknown step 'nope'"],
        ),
        (
            [step("notify"), step("b", after=["notfy"])],
            ["steps[1].after[0]: unknown step 'notfy' (did you mean 'notify'?)"],
        ),
        (
            [step("a"), step("b", after=["a", "a"])],
            ["steps[1].after[1]: step 'a' is listed more than once"],
        ),
        ([step("a", after=["a"])], ["steps[0].after[0]: step 'a' cannot wait for itself"]),
        ([step("a", after=["b"]), step("b")], ["steps[0].after: cycle: a -> b -> a"]),
    ],
)
def test_validation_messages_with_paths(steps: object, expected: list[str]) -> None:
    assert messages(steps) == expected


def test_validation_codes_are_stable() -> None:
    steps = [
        "x",
        {"type": "add_note"},
        step(""),
        step("Bad"),
        step("a"),
        step("a"),
        step("b", after="a"),
        step("c", after=[3, "zzz", "c", "a", "a"]),
        step("d", after=["e"]),
        step("e", after=["d"]),
    ]

    assert [issue.code for issue in validate_graph(steps)] == [
        "INVALID_STEP",
        "MISSING_KEY",
        "EMPTY_KEY",
        "INVALID_KEY",
        "DUPLICATE_KEY",
        "INVALID_AFTER",
        "INVALID_AFTER",
        "UNKNOWN_STEP",
        "SELF_REFERENCE",
        "DUPLICATE_DEPENDENCY",
        "CYCLE",
    ]


def test_validation_uses_the_given_path_prefix() -> None:
    issues = validate_graph([step("a"), step("a")], path="definition.steps")

    assert [str(issue) for issue in issues] == ["definition.steps[1].key: duplicate key 'a'"]


def test_step_after_an_invalid_step_gets_no_spurious_issue() -> None:
    assert messages([{"type": "add_note"}, step("b")]) == ["steps[0].key: key is required"]


def test_cycle_detection_survives_a_long_chain() -> None:
    count = 5000
    steps = [step(f"s{i}") for i in range(count)]
    steps[0] = step("s0", after=[f"s{count - 1}"])

    [issue] = validate_graph(steps)

    assert issue.path == "steps[0].after"
    assert issue.message.startswith("cycle: s0 -> s1 -> s2 -> ")
    assert issue.message.endswith(f" -> s{count - 1} -> s0")


# --------------------------------------------------------------------------- properties


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, object]]:
    """Random acyclic step lists: a hidden order, random edges, a shuffled definition order.

    Where the previous step in the list comes earlier in the hidden order, ``after`` may be
    left out (the default then adds an edge that keeps the graph acyclic).
    """
    count = draw(st.integers(min_value=0, max_value=14))
    rank = {f"s{i}": i for i in range(count)}
    waits_for: dict[str, list[str]] = {}
    for name, i in rank.items():
        earlier = [other for other, j in rank.items() if j < i]
        waits_for[name] = sorted(draw(st.sets(st.sampled_from(earlier)))) if earlier else []
    listed = draw(st.permutations(list(rank)))
    steps: list[dict[str, object]] = []
    for position, name in enumerate(listed):
        previous = listed[position - 1] if position else None
        default_is_acyclic = (
            rank[previous] < rank[name] if previous is not None else not waits_for[name]
        )
        if default_is_acyclic and draw(st.booleans()):
            steps.append(step(name))
        else:
            steps.append(step(name, after=waits_for[name], allow_failure=draw(st.booleans())))
    return steps


@settings(max_examples=300, deadline=None)
@given(steps=dags(), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_completing_ready_steps_visits_each_step_once_in_dependency_order(
    steps: list[dict[str, object]], seed: int
) -> None:
    """Given a random DAG, when the runtime keeps finishing some ready steps, then every step
    runs exactly once, after all the steps it waits for, and the run ends completed."""
    assert validate_graph(steps) == []
    deps = dependencies(steps)
    allow = {str(s["key"]): bool(s.get("allow_failure")) for s in steps}
    statuses = dict.fromkeys(deps, "pending")
    picker = random.Random(seed)
    visited: list[str] = []

    while (ready := ready_steps(deps, statuses, allow)) or any(
        status == "running" for status in statuses.values()
    ):
        assert run_outcome(deps, statuses, allow) is None
        for key in picker.sample(ready, picker.randint(1, len(ready))) if ready else []:
            statuses[key] = "running"
            visited.append(key)
        running = [key for key, status in statuses.items() if status == "running"]
        for key in picker.sample(running, picker.randint(1, len(running))):
            finished = ["completed", "skipped", "failed" if allow[key] else "completed"]
            statuses[key] = picker.choice(finished)
        assert blocked_steps(deps, statuses, allow) == []

    assert sorted(visited) == sorted(deps)
    position = {key: index for index, key in enumerate(visited)}
    for key, waits_for in deps.items():
        assert all(position[dependency] < position[key] for dependency in waits_for)
    assert run_outcome(deps, statuses, allow) == "completed"
    order = topological_order(deps)
    assert sorted(order) == sorted(deps)
    assert all(order.index(d) < order.index(k) for k, ws in deps.items() for d in ws)


@settings(max_examples=300, deadline=None)
@given(
    edges=st.dictionaries(
        st.sampled_from([f"k{i}" for i in range(8)]),
        st.lists(st.sampled_from([f"k{i}" for i in range(8)]), unique=True, max_size=3),
        max_size=8,
    )
)
def test_cycle_issue_iff_graphlib_finds_a_cycle(edges: dict[str, list[str]]) -> None:
    """The validator agrees with the standard library about cycles on arbitrary graphs."""
    steps = [
        step(key, after=[name for name in after if name in edges and name != key])
        for key, after in edges.items()
    ]
    deps = dependencies(steps)
    try:
        tuple(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError:
        has_cycle = True
    else:
        has_cycle = False

    cycles = [issue for issue in validate_graph(steps) if issue.code == "CYCLE"]

    assert bool(cycles) == has_cycle
    for issue in cycles:
        names = issue.message.removeprefix("cycle: ").split(" -> ")
        assert names[0] == names[-1]
        for before, after in itertools.pairwise(names):
            assert before in deps[after]
    if not has_cycle:
        order = topological_order(deps)
        assert all(order.index(d) < order.index(k) for k, ws in deps.items() for d in ws)
