"""Dry run equals run: for generated step graphs, the dry run (``workflows.simulation``)
predicts every step's status exactly as a real run on the same payload ends it.

Hypothesis builds workflows of 3 to 8 steps over side-effect-free step types (``validate``,
which passes or fails on a payload field; ``add_note`` and ``update_field`` on a stored
lead), with ``after`` lists that make parallel branches and joins, conditions on payload
fields and on the status of a step waited for (``and``/``or``/``not``), ``allow_failure``
and payloads that make some validations fail. Each workflow is published, dry-run, then
run for real by the engine in this process (the ``drain`` fixture, as workers would), and
the two are compared step by step, with the run's outcome.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from automation.catalogue import declare_event
from automation.events import emit
from automation.models import Run
from crm.models import Lead
from workflows.services import workflow_save
from workflows.simulation import simulate

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

FLAGS = ("a", "b", "c")
_serial = itertools.count()


def flag_leaf(draw: Any) -> dict[str, Any]:
    return {"field": draw(st.sampled_from(FLAGS)), "operator": "eq", "value": draw(st.booleans())}


@st.composite
def condition(draw: Any, deps: list[str]) -> dict[str, Any]:
    """A leaf on a payload flag or on the status of a step waited for, or a small tree."""

    def leaf() -> dict[str, Any]:
        if deps and draw(st.booleans()):
            return {
                "field": f"steps.{draw(st.sampled_from(deps))}.status",
                "operator": draw(st.sampled_from(["eq", "ne"])),
                "value": draw(st.sampled_from(["completed", "failed", "skipped"])),
            }
        return flag_leaf(draw)

    shape = draw(st.sampled_from(["leaf", "and", "or", "not"]))
    if shape == "leaf":
        return leaf()
    if shape == "not":
        return {"not": leaf()}
    return {shape: [leaf() for _ in range(draw(st.integers(1, 3)))]}


@st.composite
def workflows(draw: Any) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    count = draw(st.integers(3, 8))
    steps: list[dict[str, Any]] = []
    for index in range(count):
        key = f"s{index}"
        step: dict[str, Any] = {"key": key}
        earlier = [s["key"] for s in steps]
        after_kind = draw(st.sampled_from(["previous", "root", "some"])) if earlier else "previous"
        if after_kind == "root":
            step["after"] = []
        elif after_kind == "some":
            step["after"] = draw(st.lists(st.sampled_from(earlier), min_size=1, unique=True))
        deps = step.get("after", earlier[-1:])
        kind = draw(st.sampled_from(["validate", "validate", "add_note", "update_field"]))
        step["type"] = kind
        if kind == "validate":
            step["config"] = {"condition": flag_leaf(draw), "message": f"{key} refused"}
        elif kind == "add_note":
            step["config"] = {
                "entity_type": "lead",
                "entity_id": "{{lead_id}}",
                "note": f"{key} for {{{{payload.a}}}}",
            }
        else:
            step["config"] = {
                "entity_type": "lead",
                "entity_id": "{{lead_id}}",
                "field": "status",
                "value": draw(st.sampled_from(["qualified", "disqualified", "new"])),
            }
        if draw(st.booleans()):
            step["conditions"] = draw(condition(deps))
        if draw(st.booleans()):
            step["allow_failure"] = True
        steps.append(step)
    flags = {flag: draw(st.booleans()) for flag in FLAGS}
    return steps, flags


# No shrinking: an example costs a real run, and the first divergence is reported with its
# whole workflow and payload, small enough to read.
@settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=workflows())
def test_the_dry_run_predicts_every_step_of_the_real_run(
    case: tuple[list[dict[str, Any]], dict[str, bool]], drain: Any
) -> None:
    steps, flags = case
    lead = Lead.objects.create(company_name="Property Co")
    # An event type of its own, so the workflows of earlier examples do not start too.
    event_type = f"prop.check{next(_serial)}"
    declare_event(event_type, description="An event of the property test.")
    workflow = workflow_save(
        document={
            "slug": event_type.replace(".", "-"),
            "name": event_type,
            "triggers": [{"event_type": event_type}],
            "steps": steps,
        }
    )
    payload = {**flags, "lead_id": lead.pk}
    definition = workflow.published_version.definition

    predicted = simulate(definition, event_type=event_type, payload=payload)
    assert predicted["would_start"] is True, predicted["match"]

    event = emit(event_type, payload)
    drain()
    run = Run.objects.get(event=event)
    actual = {ar.step_key: ar.status for ar in run.action_runs.all()}
    dry = {step["key"]: step["status_if_run"] for step in predicted["steps"]}
    assert dry == actual, {"steps": steps, "payload": payload}
    assert predicted["outcome"] == run.status
    # A failed step fails with the same code in both.
    codes = {ar.step_key: ar.error_code for ar in run.action_runs.all() if ar.error_code}
    assert {s["key"]: s["error_code"] for s in predicted["steps"] if s.get("error_code")} == codes
