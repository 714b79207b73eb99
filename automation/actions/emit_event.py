"""``emit_event``: raise a domain event (chains workflows; depth-limited)."""

from __future__ import annotations

from typing import Any

from automation.actions import StepContext, StepResult, dry_run_for, object_schema, step_type
from automation.events import event_emit
from automation.models import EventSource

SCHEMA = object_schema(
    {
        "type": {"type": "string", "pattern": r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"},
        "payload": {"type": "object"},
    },
    required=["type"],
)


@step_type("emit_event", schema=SCHEMA, label="Emit an event")
def emit_event(ctx: StepContext) -> StepResult:
    """The event row commits with the step; it is dispatched after commit."""
    event = event_emit(
        ctx.config["type"], ctx.config.get("payload") or {}, source=EventSource.WORKFLOW
    )
    return StepResult(output={"event_id": event.pk, "type": event.type})


@dry_run_for("emit_event")
def emit_event_dry_run(ctx: StepContext) -> dict[str, Any]:
    return {
        "would": "emit an event",
        "type": ctx.config["type"],
        "payload": ctx.config.get("payload") or {},
    }
