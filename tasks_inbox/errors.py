"""Error codes of tasks and lifecycles (callers branch on ``code``, never on text)."""

from __future__ import annotations

from config.errors import Conflict, DomainError, ValidationFailed
from tasks_inbox.lifecycles import LifecycleInUse, LifecycleInvalid

__all__ = ["ActionDisabled", "AlreadyClaimed", "FormInvalid", "InvalidTransition",
           "LifecycleInUse", "LifecycleInvalid"]


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
