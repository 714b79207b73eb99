"""Error codes of tasks and lifecycles (callers branch on ``code``, never on text)."""

from __future__ import annotations

from config.errors import Conflict, DomainError, ValidationFailed
from tasks_inbox.lifecycles import LifecycleInUse, LifecycleInvalid

__all__ = [
    "ActionDisabled",
    "AlreadyClaimed",
    "AmbiguousQueue",
    "AmbiguousUser",
    "FormInvalid",
    "InvalidTransition",
    "LifecycleInUse",
    "LifecycleInvalid",
    "UnknownQueue",
    "UnknownUser",
]


class InvalidTransition(DomainError):
    """The action cannot be taken from the task's current state (or its guard says no).

    ``data`` carries ``current_state`` and ``allowed_actions`` (what the caller may do now).
    """

    code = "INVALID_TRANSITION"
    status = 400
    default_message = "This action is not allowed in the task's current state."


class ActionDisabled(DomainError):
    """The action exists in the task's lifecycle but is switched off (``is_enabled`` false).

    ``data`` carries ``action``, ``current_state`` and ``allowed_actions``, as
    INVALID_TRANSITION does.
    """

    code = "ACTION_DISABLED"
    status = 400
    default_message = "This action is disabled."


class AlreadyClaimed(Conflict):
    """Someone else claimed (or was assigned) the task first: 409 CONFLICT."""

    default_message = "The task has already been claimed."


class FormInvalid(ValidationFailed):
    """Submitted form data does not match the task's form; ``fields`` has per-field messages."""


class ReferenceInvalid(ValidationFailed):
    """A user or queue reference (``assignee``, ``queue``, a filter, an SLA config) names
    no object or several: 400 VALIDATION_ERROR like any bad input, with ``fields`` naming
    the parameter and ``codes`` giving its stable reason (``reason``)."""

    reason = "INVALID_REFERENCE"

    def __init__(self, message: str, *, field: str, value: str | None = None) -> None:
        data: dict[str, object] = {"codes": {field: self.reason}}
        if value is not None:
            data["value"] = value
        super().__init__(f"{field}: {message}", fields={field: [message]}, data=data)


class UnknownUser(ReferenceInvalid):
    reason = "UNKNOWN_USER"


class AmbiguousUser(ReferenceInvalid):
    reason = "AMBIGUOUS_USER"


class UnknownQueue(ReferenceInvalid):
    reason = "UNKNOWN_QUEUE"


class AmbiguousQueue(ReferenceInvalid):
    reason = "AMBIGUOUS_QUEUE"
