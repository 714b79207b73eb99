"""The registry of step types.

A step type is one module with a config schema (JSON Schema over the *unrendered* config,
where any value may also be a ``{{ template }}`` string), a handler and a dry-run behaviour.
Host code adds its own with one decorator::

    from automation.actions import StepContext, StepResult, step_type

    @step_type("crm.assign_rep", schema={"type": "object", "required": ["lead_id"], ...})
    def assign_rep(ctx: StepContext) -> StepResult:
        ...
        return StepResult(output={"rep": rep.pk})

Handlers of ``atomic`` types (the default) run inside the transaction that records their
ActionRun, so their database effects commit exactly once with it. Types with external
effects declare ``atomic=False``: their attempt is committed first and the handler gets the
ActionRun id to use as an idempotency key.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.conf import settings

from automation.templating import Mode  # how a config field renders (for step types)
from config.issues import Issue

if TYPE_CHECKING:
    from automation.models import ActionRun, Run


@dataclass
class StepContext:
    """What a handler gets: the rendered config and the run's context, read-only."""

    config: dict[str, Any]
    context: dict[str, Any]
    step: dict[str, Any]
    run: Run | None = None
    action_run: ActionRun | None = None
    dry_run: bool = False
    attempt: int = 1
    timeout_seconds: float | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and redeliveries of this step of this run."""
        return f"flowdesk-ar-{self.action_run.pk}" if self.action_run else "flowdesk-dry-run"


@dataclass
class StepResult:
    output: dict[str, Any] | None = None
    wait_until: datetime | None = None
    wait_for: str | None = None
    progress: dict[str, Any] | None = None


class StepFailed(Exception):
    """The step did not do its job. ``retryable`` failures go through the retry policy."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "STEP_FAILED",
        retryable: bool = False,
        output: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.output = output
        self.retry_after = retry_after


class StepConfigCode(StrEnum):
    """Stable codes of the issues step types find in a config on save (their ``check``)."""

    UNKNOWN_ENTITY_TYPE = "UNKNOWN_ENTITY_TYPE"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    FIELD_NOT_WRITABLE = "FIELD_NOT_WRITABLE"
    INVALID_FIELD_VALUE = "INVALID_FIELD_VALUE"
    NOT_A_CHOICE = "NOT_A_CHOICE"
    TOO_LONG = "TOO_LONG"
    UNKNOWN_USER = "UNKNOWN_USER"
    UNKNOWN_QUEUE = "UNKNOWN_QUEUE"
    UNKNOWN_EMAIL_TEMPLATE = "UNKNOWN_EMAIL_TEMPLATE"
    UNKNOWN_LIFECYCLE = "UNKNOWN_LIFECYCLE"
    UNKNOWN_LIFECYCLE_ACTION = "UNKNOWN_LIFECYCLE_ACTION"
    INVALID_DURATION = "INVALID_DURATION"
    INVALID_DATE = "INVALID_DATE"
    RESERVED_HEADER = "RESERVED_HEADER"
    NOT_EXPORTABLE = "NOT_EXPORTABLE"
    INVALID_FILTER = "INVALID_FILTER"
    CONFLICTING_KEYS = "CONFLICTING_KEYS"
    REQUIRED = "REQUIRED"
    SECRET_NOT_ALLOWED = "SECRET_NOT_ALLOWED"  # noqa: S105 (a code, not a secret)
    INVALID_ADDRESS = "INVALID_ADDRESS"


Handler = Callable[[StepContext], StepResult]
DryRun = Callable[[StepContext], dict[str, Any]]
# Extra checks of an unrendered config beyond its schema: (config, json_path) -> issues.
# They know the domain: entity types, fields, users, queues, templates, durations.
ConfigCheck = Callable[[dict[str, Any], str], list[Issue]]


@dataclass
class StepType:
    name: str
    handler: Handler
    schema: dict[str, Any]
    atomic: bool = True
    label: str = ""
    description: str = ""
    # Escaping per top-level config key: "html" for HTML bodies, "header" for subjects and
    # header values (CR/LF refused), default "plain".
    render_modes: dict[str, Mode] = field(default_factory=dict)
    dry_run: DryRun | None = None
    # Retry policy used when the step itself says nothing.
    default_retry: dict[str, Any] = field(default_factory=dict)
    check: ConfigCheck | None = None
    # Top-level config keys that send their value outward (a webhook's url, headers and
    # body): the only places ``{{secrets.NAME}}`` may be used (see automation.secrets).
    secret_fields: tuple[str, ...] = ()
    # The handler has no effect beyond its result (it reads, computes, passes or fails):
    # a dry run calls it for real instead of only describing it.
    pure: bool = False
    # Whether a run parks on this step: "never", "always" (a delay), or "optional" when the
    # config's ``wait`` flag decides (a task the run waits on).
    waits: str = "never"

    def simulate(self, ctx: StepContext) -> dict[str, Any]:
        """What the step would do, without doing it."""
        if self.dry_run is not None:
            return self.dry_run(ctx)
        return {"would": f"run {self.name}", "config": ctx.config}


WAITS = ("never", "always", "optional")

_registry: dict[str, StepType] = {}


def step_type(
    name: str,
    *,
    schema: dict[str, Any],
    atomic: bool = True,
    label: str = "",
    render_modes: dict[str, Mode] | None = None,
    default_retry: dict[str, Any] | None = None,
    check: ConfigCheck | None = None,
    secret_fields: tuple[str, ...] | list[str] = (),
    pure: bool = False,
    waits: str = "never",
) -> Callable[[Handler], Handler]:
    """Register a step type; the decorated function is its handler. ``pure``: the
    handler has no side effect, so a dry run may call it (``validate`` is). ``waits``:
    whether a run parks on it ("never", "always", "optional")."""
    if waits not in WAITS:
        raise ValueError(f"waits must be one of {', '.join(WAITS)}, not {waits!r}")

    def decorator(handler: Handler) -> Handler:
        _registry[name] = StepType(
            name=name,
            handler=handler,
            schema=schema,
            atomic=atomic,
            label=label or name.replace("_", " ").capitalize(),
            description=(handler.__doc__ or "").strip(),
            render_modes=render_modes or {},
            default_retry=default_retry or {},
            check=check,
            secret_fields=tuple(secret_fields),
            pure=pure,
            waits=waits,
        )
        return handler

    return decorator


def dry_run_for(name: str) -> Callable[[DryRun], DryRun]:
    """Attach a dry-run behaviour to a registered step type."""

    def decorator(func: DryRun) -> DryRun:
        _registry[name].dry_run = func
        return func

    return decorator


def get_step_type(name: str) -> StepType | None:
    return _registry.get(name)


def step_types() -> dict[str, StepType]:
    return dict(_registry)


# The engine's own step types. Apps add theirs from their ``AppConfig.ready()`` by
# importing the modules that declare them (the tasks app: ``create_task``,
# ``transition_task`` and ``send_notification``, in ``tasks_inbox.steps``).
BUILTIN_MODULES = (
    "add_note",
    "update_field",
    "emit_event",
    "delay",
    "validate",
    "send_email",
    "call_webhook",
    "enqueue_export",
)


def load_actions() -> None:
    """Import the engine's step types and those named in ``FLOWDESK["ACTION_MODULES"]``."""
    for module in BUILTIN_MODULES:
        importlib.import_module(f"automation.actions.{module}")
    for module in settings.FLOWDESK.get("ACTION_MODULES", ()):
        importlib.import_module(module)


# --- schema helpers -------------------------------------------------------------------

TEMPLATE_STRING = {"type": "string", "pattern": r"\{\{"}


def templated(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema that also accepts a ``{{ template }}`` string in place of the value."""
    return {"anyOf": [schema, TEMPLATE_STRING]}


def object_schema(
    properties: dict[str, Any], required: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }
