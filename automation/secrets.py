"""Secrets referenced by name from templates (``{{secrets.CRM_API_KEY}}``).

Values live outside workflow definitions: in the environment as ``FLOWDESK_SECRET_<NAME>``.
Every value a step used is masked in its ActionRun input and output.
"""

from __future__ import annotations

import os

from automation.actions import StepFailed


def resolve_secret(name: str) -> str:
    """The secret's value; a missing secret fails the step with ``UNKNOWN_SECRET``."""
    value = os.environ.get(f"FLOWDESK_SECRET_{name}")
    if value is None:
        raise StepFailed(f"unknown secret '{name}'", code="UNKNOWN_SECRET")
    return value
