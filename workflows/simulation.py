"""Dry runs: what a workflow would do with a sample event, with no side effects.

Shows each trigger (type match, condition trace, matched or not), then each step in graph
order: its condition trace, whether it would run or be skipped, its rendered config
(secrets masked) and its type's dry-run description. Everything runs in a transaction that
is rolled back, so not even an accidental write survives.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from automation import graph
from automation.actions import StepContext, StepFailed, get_step_type
from automation.conditions import ConditionInvalid, compile_condition
from automation.matcher import type_matches
from automation.templating import TemplateRenderError, render_value
from config.errors import ValidationFailed

MASK = "********"


def sample_context(
    event_type: str, payload: dict[str, Any] | None, entity_id: Any = None
) -> dict[str, Any]:
    """The context a real event would carry; from a stored object when ``entity_id`` is set."""
    from automation.receivers import model_context
    from automation.registry import registration_for_name

    name = event_type.split(".", 1)[0]
    registration = registration_for_name(name)
    if registration is not None and entity_id is not None:
        try:
            key = registration.model._meta.pk.to_python(entity_id)
        except DjangoValidationError:
            raise ValidationFailed.from_issues(
                [("entity_id", f"{entity_id!r} is not an id of a {name}")]
            ) from None
        instance = registration.model._default_manager.filter(pk=key).first()
        if instance is not None:
            context = model_context(registration, instance)
            context.update(payload or {})
            return _with_event(context, event_type)
    payload = payload or {}
    if registration is not None and name not in payload:
        context = {**payload, name: payload, "entity_type": name, "changes": {}}
    else:
        context = {**payload, "payload": payload}
    return _with_event(context, event_type)


def _with_event(context: dict[str, Any], event_type: str) -> dict[str, Any]:
    context.setdefault("actor", None)
    context["event"] = {
        "id": None,
        "type": event_type,
        "occurred_at": timezone.now().isoformat(),
        "source": "simulation",
        "depth": 0,
    }
    return context


def simulate(
    definition: dict[str, Any],
    *,
    event_type: str,
    payload: dict[str, Any] | None,
    entity_id: Any = None,
) -> dict[str, Any]:
    with transaction.atomic():
        result = _simulate(definition, event_type=event_type, payload=payload, entity_id=entity_id)
        transaction.set_rollback(True)
    return result


def _simulate(
    definition: dict[str, Any], *, event_type: str, payload: dict[str, Any] | None, entity_id: Any
) -> dict[str, Any]:
    context = sample_context(event_type, payload, entity_id)
    triggers = []
    matched_index = None
    order = sorted(
        enumerate(definition.get("triggers") or []),
        key=lambda item: -int(item[1].get("priority") or 0),
    )
    for index, trigger in order:
        type_ok = type_matches(trigger["event_type"], event_type)
        entry: dict[str, Any] = {
            "index": index,
            "event_type": trigger["event_type"],
            "priority": trigger.get("priority", 0),
            "is_active": trigger.get("is_active", True),
            "type_matches": type_ok,
            "trace": None,
        }
        matched = type_ok and trigger.get("is_active", True)
        if trigger.get("conditions"):
            compiled = compile_condition(
                trigger["conditions"], path=f"triggers[{index}].conditions"
            )
            entry["trace"] = compiled.trace(context)
            matched = matched and entry["trace"]["result"]
        entry["matched"] = bool(matched)
        if matched and matched_index is None:
            matched_index = index
        triggers.append(entry)

    steps_out = []
    steps = definition.get("steps") or []
    deps = graph.dependencies(steps)
    by_key = {s["key"]: s for s in steps}
    statuses: dict[str, str] = {}
    outputs: dict[str, Any] = {}
    for key in graph.topological_order(deps):
        step = by_key[key]
        entry = _simulate_step(step, {**context, "steps": outputs}, deps, statuses)
        statuses[key] = entry["status_if_run"]
        outputs[key] = {"status": entry["status_if_run"]}
        steps_out.append(entry)
    return {
        "event": {"type": event_type, "context": context},
        "triggers": triggers,
        "would_start": matched_index is not None and bool(definition.get("is_active", True)),
        "matched_trigger": matched_index,
        "steps": steps_out,
        "side_effects": "none (dry run)",
    }


def _simulate_step(
    step: dict[str, Any],
    context: dict[str, Any],
    deps: dict[str, list[str]],
    statuses: dict[str, str],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": step["key"],
        "type": step["type"],
        "after": deps.get(step["key"], []),
        "condition_trace": None,
    }
    blocked = [d for d in deps.get(step["key"], []) if statuses.get(d) in ("failed", "cancelled")]
    if blocked:
        entry.update(status_if_run="cancelled", reason=f"depends on {', '.join(blocked)}")
        return entry
    if step.get("conditions"):
        try:
            compiled = compile_condition(step["conditions"])
        except ConditionInvalid as exc:
            entry.update(status_if_run="failed", error=str(exc))
            return entry
        entry["condition_trace"] = compiled.trace(context)
        if not entry["condition_trace"]["result"]:
            entry.update(status_if_run="skipped", reason="condition is false")
            return entry
    step_type = get_step_type(step["type"])
    if step_type is None:
        entry.update(status_if_run="failed", error=f"unknown step type '{step['type']}'")
        return entry
    try:
        rendered = render_value(
            step.get("config") or {},
            context,
            secrets=lambda name: MASK,
            modes=step_type.render_modes,
        ).value
    except TemplateRenderError as exc:
        entry.update(status_if_run="failed", error=str(exc))
        return entry
    entry["rendered_config"] = rendered
    try:
        entry["dry_run"] = step_type.simulate(
            StepContext(config=rendered, context=context, step=step, dry_run=True)
        )
        entry["status_if_run"] = "completed"
    except StepFailed as exc:
        entry.update(status_if_run="failed", error=exc.message, error_code=exc.code)
    return entry
