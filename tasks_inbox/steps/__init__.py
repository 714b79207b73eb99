"""The step types that belong to tasks, registered with the engine's step registry
(``automation.actions``) from ``TasksInboxConfig.ready()`` through :func:`register`:

- ``create_task``: a human step, optionally waiting for the task to end;
- ``transition_task``: fire a lifecycle action on a task, as the system;
- ``send_notification``: an in-app notification (a ``tasks_inbox.Notification``) or the
  same message by email (through ``automation.actions.mailing``).

A task that ends tells the engine through ``automation.signals.waiting_step_ended``
(``tasks_inbox.services``), never by calling the engine's internals.
"""

from __future__ import annotations

import importlib

MODULES = ("create_task", "transition_task", "send_notification")


def register() -> None:
    """Import the step type modules; their ``@step_type`` decorators register them."""
    for module in MODULES:
        importlib.import_module(f"tasks_inbox.steps.{module}")
