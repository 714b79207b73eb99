"""``validate``: fail the run with a message when a condition is false.

``values`` (templated) are added to the context the condition reads, so a step can check
figures computed from earlier steps::

    {"condition": {"field": "total", "operator": "eq", "value": 100},
     "values": {"total": "{{steps.products.weights|sum}}"},
     "message": "weights must sum to 100%"}
"""

from __future__ import annotations

from typing import Any

from automation.actions import StepContext, StepFailed, StepResult, dry_run_for, step_type
from automation.conditions import compile_condition, validate_condition
from config.issues import Issue

SCHEMA = {
    "type": "object",
    "properties": {
        "condition": {"type": "object"},
        "message": {"type": "string", "minLength": 1},
        "values": {"type": "object"},
    },
    "required": ["condition", "message"],
    "additionalProperties": False,
}


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    condition = config.get("condition")
    if not isinstance(condition, dict):
        return []
    return validate_condition(condition, path=f"{path}.condition")


def _check(ctx: StepContext) -> tuple[bool, dict[str, Any]]:
    condition = compile_condition(ctx.config["condition"], path="config.condition")
    context = {**ctx.context, **(ctx.config.get("values") or {})}
    return condition(context), condition.trace(context)


@step_type("validate", schema=SCHEMA, label="Validate", check=check_config)
def validate(ctx: StepContext) -> StepResult:
    """Pass when the condition holds; otherwise fail with the configured message."""
    ok, trace = _check(ctx)
    if not ok:
        raise StepFailed(
            str(ctx.config["message"]), code="VALIDATION_FAILED", output={"trace": trace}
        )
    return StepResult(output={"valid": True, "values": ctx.config.get("values") or {}})


@dry_run_for("validate")
def validate_dry_run(ctx: StepContext) -> dict[str, Any]:
    ok, trace = _check(ctx)
    return {"would": "pass" if ok else f"fail: {ctx.config['message']}", "trace": trace}
