"""Dry runs: what a run of a workflow would do with an event, decided by the engine's own
code, with nothing written and nothing sent.

The same code as a real run, step for step:

- **matching**: the definition's triggers become the matcher's candidates
  (``candidates_from_definition``: inactive triggers left out, conditions compiled), tried
  in the matcher's order (``rank``) by the function the trigger index matches with
  (``first_matches``). When none matches, the answer says so and predicts no steps.
- **planning**: round after round, ``graph.plan`` decides what the engine's advance
  decides: which pending steps can never run (cancelled, naming the upstream step that
  failed or was cancelled), whether the run is over, which steps are ready (``after``,
  ``allow_failure``).
- **each ready step**: ``step_decide`` (the engine's ``step_prepare`` calls it too): an
  unknown type fails, a false condition skips (the reason names the path of the node that
  is false), the config is rendered with the type's render modes and secret policy (a
  secret must exist; its value is masked). Then a *pure* step type (``validate``) runs its
  handler for real; any other type only describes what it would do (its ``simulate``
  hook, ``dry_run=True``), which may refuse (an object that does not exist, a field that
  is not writable): that step is predicted failed. Steps that wait (a delay, a task) are
  predicted to complete once the wait ends; outputs of steps with effects are unknown, so
  ``{{steps.X.<output>}}`` renders empty after them.
- **per-step validation**: the document's validation issues are listed, each under its
  step; a step whose type or config has issues is predicted failed (``INVALID_CONFIG``).

The payload comes from, in this order: a stored event (``event_id``: the context its run
would start from), a stored object (``entity_id``, of the event type's registered model,
overlaid with ``payload``), the ``payload`` given, or a sample (:func:`event_sample`).
Everything runs in a transaction that is rolled back, so not even an accidental write
survives.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, transaction
from django.utils import timezone

from automation import graph
from automation.actions import StepContext, StepFailed, StepType, get_step_type
from automation.conditions import CompiledCondition, ConditionInvalid, compile_condition
from automation.matcher import candidates_from_definition, first_matches, rank, type_matches
from automation.secrets import resolve_secret
from automation.services.execution import SKIPPED_OUTPUT, context_with_steps, step_decide
from automation.services.retry import retry_policy
from automation.templating import DEFAULT_MASK
from config.errors import ValidationFailed

MASK = DEFAULT_MASK
# The event type that simulates execute/ (a run by hand, no trigger matching); the default
# for a workflow without triggers.
MANUAL = "manual"


# --- the event ------------------------------------------------------------------------


def sample_context(
    event_type: str, payload: dict[str, Any] | None, entity_id: Any = None
) -> dict[str, Any]:
    """The context a real event would carry; from a stored object when ``entity_id`` is set."""
    from automation.receivers import model_context
    from automation.registry import registration_for_name

    name = event_type.split(".", 1)[0]
    registration = registration_for_name(name)
    if entity_id is not None:
        if registration is None:
            raise ValidationFailed.from_issues(
                [("entity_id", f"{event_type} is not an event of a registered model")]
            )
        try:
            key = registration.model._meta.pk.to_python(entity_id)
        except DjangoValidationError:
            raise ValidationFailed.from_issues(
                [("entity_id", f"{entity_id!r} is not an id of a {name}")]
            ) from None
        instance = registration.model._default_manager.filter(pk=key).first()
        if instance is None:
            raise ValidationFailed.from_issues([("entity_id", f"no {name} {entity_id}")])
        context = model_context(registration, instance)
        context.update(payload or {})
        return _with_event(context, event_type)
    payload = payload or {}
    if registration is not None and name not in payload:
        context = {**payload, name: payload, "entity_type": name, "changes": {}}
    else:
        context = {**payload, "payload": payload}
    return _with_event(context, event_type)


def event_sample(event_type: str) -> dict[str, Any] | None:
    """A sample context for ``event_type``, or None when there is none to build.

    The one place samples come from: today built from the registered model's fields (an
    unsaved object with a plausible value in each field; ``<field>_changed`` events carry
    the change from null). An event type of no registered model has no sample.
    """
    from automation.receivers import model_context
    from automation.registry import registration_for_name

    name, _, action = event_type.partition(".")
    registration = registration_for_name(name)
    if registration is None:
        return None
    model = registration.model
    instance = model(
        **{
            f.attname: _sample_value(f)
            for f in model._meta.concrete_fields
            if not f.primary_key and not f.is_relation
        }
    )
    context = model_context(registration, instance)
    if action.endswith("_changed"):
        changed = action.removesuffix("_changed")
        if changed in context:
            value = context[changed]
            context["changes"] = {changed: {"old": None, "new": value}}
            context.update({f"old_{changed}": None, f"new_{changed}": value})
    context["actor"] = None
    return _with_event(context, event_type)


def _sample_value(field: models.Field) -> Any:
    if field.choices:
        return field.get_default() if field.has_default() else field.choices[0][0]
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, models.DecimalField):
        return decimal.Decimal(1000).quantize(decimal.Decimal(1).scaleb(-field.decimal_places))
    if isinstance(field, models.IntegerField | models.FloatField):
        return 1
    if isinstance(field, models.DateTimeField):
        return timezone.now()
    if isinstance(field, models.DateField):
        return timezone.localdate()
    if isinstance(field, models.DurationField):
        return dt.timedelta(hours=1)
    if isinstance(field, models.EmailField):
        return "sample@example.com"
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.CharField | models.TextField):
        text = f"Sample {field.verbose_name}"
        return text[: field.max_length] if field.max_length else text
    return field.get_default()


def stored_event_context(event_id: Any, event_type: str | None) -> dict[str, Any]:
    """The context a run of the stored event starts from (as dispatching builds it)."""
    from automation.events import event_context
    from automation.models import Event

    try:
        key = int(event_id)
    except (TypeError, ValueError):
        raise ValidationFailed.from_issues(
            [("event_id", f"{event_id!r} is not an event id")]
        ) from None
    event = Event.objects.filter(pk=key).first()
    if event is None:
        raise ValidationFailed.from_issues([("event_id", f"no event {event_id}")])
    if event_type and event_type != event.type:
        raise ValidationFailed.from_issues(
            [("event_type", f"event {key} is a {event.type}, not a {event_type}")]
        )
    return event_context(event)


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


# --- the dry run ----------------------------------------------------------------------


def simulate(
    definition: dict[str, Any],
    *,
    event_type: str | None,
    payload: dict[str, Any] | None,
    entity_id: Any = None,
    event_id: Any = None,
    sample: bool = False,
) -> dict[str, Any]:
    """What a run of ``definition`` would do with the event; nothing is written or sent.

    ``event_type`` defaults to the stored event's type (``event_id``), else the first
    trigger's. Without ``payload``, ``entity_id`` or ``event_id`` (or with ``sample``),
    the payload is a sample of the event type (:func:`event_sample`).
    """
    if event_id is not None and event_id != "":
        context = stored_event_context(event_id, event_type)
        event_type, source = context["event"]["type"], "event"
    else:
        event_type = event_type or next(
            (t["event_type"] for t in definition.get("triggers") or []), MANUAL
        )
        if entity_id is not None and entity_id != "":
            context, source = sample_context(event_type, payload, entity_id), "entity"
        elif payload and not sample:
            context, source = sample_context(event_type, payload), "payload"
        else:
            generated = event_sample(event_type)
            context = generated if generated is not None else sample_context(event_type, {})
            source = "sample" if generated is not None else "payload"
    with transaction.atomic():
        result = _simulate(definition, event_type, context)
        transaction.set_rollback(True)
    result["event"]["source"] = source
    return result


def _simulate(
    definition: dict[str, Any], event_type: str, context: dict[str, Any]
) -> dict[str, Any]:
    issues = _issues(definition)
    active = bool(definition.get("is_active", True))
    if event_type == MANUAL or not definition.get("triggers"):
        # What execute/ would do (the only way a workflow without triggers runs): it
        # starts a run with this context, whatever the triggers say.
        triggers: list[dict[str, Any]] = []
        matched_index, would_start = None, True
        summary = (
            "Run by hand (execute/): no trigger is matched, a run would start."
            if definition.get("triggers")
            else "The workflow has no triggers: it runs only by hand (execute/), as planned here."
        )
    else:
        triggers, matched_index = _match(definition, event_type, context)
        would_start = matched_index is not None and active
        summary = _match_summary(triggers, matched_index, active, event_type)
    result: dict[str, Any] = {
        "event": {"type": event_type, "context": context},
        "triggers": triggers,
        "would_start": would_start,
        "matched_trigger": matched_index,
        "match": summary,
        "steps": [],
        "outcome": None,
        "issues": issues,
        "side_effects": "none (dry run)",
    }
    if would_start:
        steps, outcome = _plan(definition, context, issues)
        result.update(steps=steps, outcome=outcome)
    return result


def _issues(definition: dict[str, Any]) -> list[dict[str, str]]:
    """The document's validation errors (warnings do not make a step fail)."""
    from workflows.definition import validate_definition

    return [issue.as_dict() for issue in validate_definition(definition) if issue.is_error]


def _match(
    definition: dict[str, Any], event_type: str, context: dict[str, Any]
) -> tuple[list[dict[str, Any]], int | None]:
    """Each trigger as the matcher sees it, and the index of the one that matches."""
    triggers = definition.get("triggers") or []
    try:
        candidates = candidates_from_definition(0, 0, definition)
    except ConditionInvalid:
        candidates = []  # an invalid condition matches nothing; the issues say why
    ranked = sorted((c for c in candidates if c.matches_type(event_type)), key=rank)
    chosen = first_matches(ranked, context)
    matched_index = chosen[0].trigger_index if chosen else None
    tried = {c.trigger_index for c in ranked}
    entries = []
    order = sorted(range(len(triggers)), key=lambda i: -int(triggers[i].get("priority") or 0))
    for index in order:
        trigger = triggers[index]
        type_ok = type_matches(trigger["event_type"], event_type)
        entry: dict[str, Any] = {
            "index": index,
            "event_type": trigger["event_type"],
            "priority": trigger.get("priority", 0),
            "is_active": trigger.get("is_active", True),
            "type_matches": type_ok,
            "trace": None,
            "matched": index == matched_index,
        }
        if trigger.get("conditions"):
            try:
                condition = compile_condition(
                    trigger["conditions"], path=f"triggers[{index}].conditions"
                )
                entry["trace"] = condition.trace(context)
            except ConditionInvalid as exc:
                entry["trace"] = {"error": str(exc)}
        entry["reason"] = _trigger_reason(entry, index in tried, matched_index)
        entries.append(entry)
    return entries, matched_index


def _trigger_reason(entry: dict[str, Any], tried: bool, matched_index: int | None) -> str:
    if entry["matched"]:
        return "matches"
    if not entry["type_matches"]:
        return f"listens to {entry['event_type']}"
    if not entry["is_active"]:
        return "switched off"
    trace = entry["trace"]
    if isinstance(trace, dict) and "error" in trace:
        return f"invalid condition: {trace['error']}"
    if trace is not None and not trace.get("result"):
        return f"condition false at {false_at(trace)}"
    if tried and matched_index is not None:
        return f"trigger #{matched_index} matched first"
    return "does not match"


def _match_summary(
    triggers: list[dict[str, Any]], matched_index: int | None, active: bool, event_type: str
) -> str:
    if matched_index is None:
        why = "; ".join(f"trigger #{t['index']} {t['reason']}" for t in triggers)
        return f"No trigger matches {event_type} ({why}): no run would start."
    if not active:
        return (
            f"Trigger #{matched_index} matches {event_type}, but the workflow is switched "
            "off: no run would start."
        )
    return f"Trigger #{matched_index} matches {event_type}: a run would start."


def false_at(trace: dict[str, Any]) -> str:
    """The path of the node that makes a false condition false: the first false child
    of each ``and`` down to a leaf (an ``or`` or ``not`` is false as a whole)."""
    if trace.get("op") == "and":
        for child in trace.get("children") or []:
            if not child.get("result"):
                return false_at(child)
    return str(trace.get("path"))


def _masked_secret(name: str) -> str:
    """A secret for a dry run: it must exist (as a real run needs it), its value is masked."""
    resolve_secret(name)
    return MASK


def _plan(
    definition: dict[str, Any], context: dict[str, Any], issues: list[dict[str, str]]
) -> tuple[list[dict[str, Any]], str | None]:
    """Every step's predicted status, planned round by round as the engine plans."""
    steps = definition.get("steps") or []
    if graph.validate_graph(steps):
        return [], None  # the graph itself is invalid (the issues say how): nothing to plan
    deps = graph.dependencies(steps)
    allow = {s["key"]: bool(s.get("allow_failure")) for s in steps}
    entries = {s["key"]: _entry(s, index, deps, issues) for index, s in enumerate(steps)}
    statuses: dict[str, str] = dict.fromkeys(deps, graph.StepStatus.PENDING)
    outputs: dict[str, dict[str, Any] | None] = {}
    settled: list[str] = []
    outcome = None
    for _ in range(2 * len(steps) + 2):
        plan = graph.plan(deps, statuses, allow)
        for key, reason in plan.cancel.items():
            statuses[key] = graph.StepStatus.CANCELLED
            entries[key].update(status_if_run="cancelled", reason=reason)
            entries[key]["error_code"] = "UPSTREAM_FAILED"
            settled.append(key)
        if plan.outcome is not None or not plan.ready:
            outcome = plan.outcome
            break
        # The ready steps are parallel branches: none sees the others' results.
        finished = {key: (statuses[key], outputs.get(key)) for key in statuses}
        for key in plan.ready:
            step_context = context_with_steps(context, finished, exclude=key)
            status, output = _decide(entries[key], steps[entries[key]["index"]], step_context)
            statuses[key] = status
            outputs[key] = output
            settled.append(key)
    ordered = [entries[key] for key in settled]
    ordered += [entry for key, entry in entries.items() if key not in settled]
    return ordered, outcome


def _entry(
    step: dict[str, Any], index: int, deps: dict[str, list[str]], issues: list[dict[str, str]]
) -> dict[str, Any]:
    prefix = f"steps[{index}]"
    own = [
        issue
        for issue in issues
        if issue["path"] == prefix or issue["path"].startswith((f"{prefix}.", f"{prefix}["))
    ]
    return {
        "key": step["key"],
        "index": index,
        "type": step["type"],
        "after": deps.get(step["key"], []),
        "allow_failure": bool(step.get("allow_failure")),
        "condition_trace": None,
        "config_issues": own,
        "status_if_run": "pending",
    }


def _decide(
    entry: dict[str, Any], step: dict[str, Any], context: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """Decide one ready step as the engine would; fills ``entry``, returns (status,
    output) for the steps after it."""
    step_type = get_step_type(step["type"])
    condition: CompiledCondition | None = None
    if step.get("conditions") and step_type is not None:
        try:
            condition = compile_condition(step["conditions"])
        except ConditionInvalid as exc:
            return _failed(entry, step, step_type, StepFailed(str(exc), code="INVALID_CONDITION"))
        entry["condition_trace"] = condition.trace(context)
    decision = step_decide(step, step_type, condition, context, lookup=_masked_secret)
    if decision.skip:
        assert entry["condition_trace"] is not None
        entry.update(
            status_if_run="skipped",
            reason=f"condition false at {false_at(entry['condition_trace'])}",
        )
        return graph.StepStatus.SKIPPED, dict(SKIPPED_OUTPUT)
    if decision.failure is not None:
        return _failed(entry, step, step_type, decision.failure)
    assert step_type is not None and decision.config is not None
    entry["rendered_config"] = decision.config
    config_issues = [i for i in entry["config_issues"] if ".config" in i["path"]]
    if config_issues or any(i["path"].endswith(".type") for i in entry["config_issues"]):
        first = (config_issues or entry["config_issues"])[0]
        failure = StepFailed(f"{first['path']}: {first['message']}", code="INVALID_CONFIG")
        return _failed(entry, step, step_type, failure)
    ctx = StepContext(
        config=decision.config,
        context=context,
        step=step,
        dry_run=True,
        timeout_seconds=step.get("timeout_seconds"),
    )
    try:
        entry["dry_run"] = step_type.simulate(ctx)
    except StepFailed as exc:
        if not step_type.pure:
            return _failed(entry, step, step_type, exc)
        entry["dry_run"] = {"error": exc.message, "error_code": exc.code}
    if not step_type.pure:
        entry.update(status_if_run="completed", evaluated="described")
        entry["reason"] = f"would {_would(entry['dry_run'], step_type)}"
        return graph.StepStatus.COMPLETED, None
    # A pure step type: its handler runs for real (it has no effect to hold back).
    entry["evaluated"] = "for real"
    try:
        with transaction.atomic():
            result = step_type.handler(ctx)
    except StepFailed as exc:
        return _failed(entry, step, step_type, exc)
    except Exception as exc:
        failure = StepFailed(f"{type(exc).__name__}: {exc}", code="STEP_ERROR", retryable=True)
        return _failed(entry, step, step_type, failure)
    entry.update(status_if_run="completed", reason="passes", output=result.output)
    return graph.StepStatus.COMPLETED, result.output


def _would(description: Any, step_type: StepType) -> str:
    would = description.get("would") if isinstance(description, dict) else None
    return str(would or f"run {step_type.name}")


def _failed(
    entry: dict[str, Any], step: dict[str, Any], step_type: StepType | None, exc: StepFailed
) -> tuple[str, dict[str, Any] | None]:
    """The step fails, as the engine records a failure (a retryable one after its retries)."""
    code = exc.code
    if exc.retryable and int(retry_policy(step, step_type)["max_attempts"]) > 1:
        code = "DEAD_LETTER"  # what the engine records once the retries are used up
    entry.update(
        status_if_run="failed",
        error=exc.message,
        error_code=code,
        reason=f"fails: {exc.message}",
    )
    if exc.output is not None:
        entry["output"] = exc.output
    return graph.StepStatus.FAILED, exc.output
