"""``delay``: park the run until a time (``{"for": "2 days"}`` or ``{"until": "..."}``).

The due time is stored on the ActionRun and swept by beat, so a delay survives a broker
flush or a restart; short delays also get a broker message to resume on time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from automation.actions import (
    StepConfigCode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    step_type,
    templated,
)
from automation.actions.entities import is_templated
from config.durations import DurationInvalid, parse_duration
from config.issues import Issue

MAX_DELAY = dt.timedelta(days=366)

SCHEMA = {
    "type": "object",
    "properties": {
        "for": templated({"type": ["string", "number"]}),
        "until": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["for"]}, {"required": ["until"]}],
}


def duration_of(value: object) -> dt.timedelta:
    """The ``for`` of a delay, in the one duration grammar (``config.durations``)."""
    try:
        duration = parse_duration(value)
    except DurationInvalid as exc:
        raise StepFailed(f"'for': {exc}", code="INVALID_DURATION") from None
    if duration < dt.timedelta(0):
        raise StepFailed("'for': a duration cannot be negative", code="INVALID_DURATION")
    return duration


def parse_until(value: object) -> dt.datetime:
    text = str(value).strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StepFailed(
            f"'until': {value!r} is not an ISO date or datetime", code="INVALID_DATE"
        ) from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def due_time(config: dict[str, Any]) -> dt.datetime:
    now = timezone.now()
    wake = now + duration_of(config["for"]) if "for" in config else parse_until(config["until"])
    if wake - now > MAX_DELAY:
        raise StepFailed("a delay cannot be longer than 366 days", code="INVALID_DURATION")
    return wake


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """A duration or date known on save must parse, and stay within a year."""
    for key, parse in (("for", duration_of), ("until", parse_until)):
        value = config.get(key)
        if value is None or is_templated(value):
            continue
        try:
            parsed = parse(value)
        except StepFailed as exc:
            code = StepConfigCode.INVALID_DURATION if key == "for" else StepConfigCode.INVALID_DATE
            return [Issue(f"{path}.{key}", code, exc.message)]
        if isinstance(parsed, dt.timedelta) and parsed > MAX_DELAY:
            return [
                Issue(
                    f"{path}.for",
                    StepConfigCode.INVALID_DURATION,
                    "a delay cannot be longer than 366 days",
                )
            ]
    return []


@step_type("delay", schema=SCHEMA, label="Wait", check=check_config, waits="always")
def delay(ctx: StepContext) -> StepResult:
    """Park the run until the due time; a time already past continues at once."""
    wake = due_time(ctx.config)
    if wake <= timezone.now():
        return StepResult(output={"waited_until": wake.isoformat(), "waited": False})
    return StepResult(output={"wake_at": wake.isoformat()}, wait_until=wake)


@dry_run_for("delay")
def delay_dry_run(ctx: StepContext) -> dict[str, Any]:
    return {"would": "wait", "until": due_time(ctx.config).isoformat()}
