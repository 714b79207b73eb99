"""Error codes of workflow authoring."""

from __future__ import annotations

from enum import StrEnum

from config.errors import Conflict, ValidationFailed


class DefinitionInvalid(ValidationFailed):
    """A workflow document failed validation; ``fields`` maps JSON paths to messages."""


class WorkflowInUse(Conflict):
    code = "WORKFLOW_IN_USE"
    default_message = "The workflow has runs; deactivate it instead of deleting it."


class DraftOnly(Conflict):
    code = "DRAFT_ONLY"
    default_message = (
        "The workflow was never published: its draft is all there is. "
        "Delete the workflow instead of discarding the draft."
    )


class UnknownVersion(ValidationFailed):
    code = "UNKNOWN_VERSION"


class DefinitionCode(StrEnum):
    """Stable codes of workflow-document issues (beside the shared ``IssueCode`` ones and
    those of conditions, templates, graphs and step configs)."""

    INVALID_SLUG = "INVALID_SLUG"
    INVALID_NAME = "INVALID_NAME"
    DUPLICATE_SLUG = "DUPLICATE_SLUG"
    TOO_MANY_TRIGGERS = "TOO_MANY_TRIGGERS"
    TOO_MANY_STEPS = "TOO_MANY_STEPS"
    INVALID_EVENT_TYPE = "INVALID_EVENT_TYPE"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    UNKNOWN_STEP_TYPE = "UNKNOWN_STEP_TYPE"
    SECRET_NOT_ALLOWED = "SECRET_NOT_ALLOWED"  # noqa: S105 (a code, not a secret)
    UNKNOWN_STEP = "UNKNOWN_STEP"
    STEP_NOT_UPSTREAM = "STEP_NOT_UPSTREAM"
    UNKNOWN_PATH = "UNKNOWN_PATH"
    OPERATOR_NOT_APPLICABLE = "OPERATOR_NOT_APPLICABLE"
    VALUE_TYPE_MISMATCH = "VALUE_TYPE_MISMATCH"
    UNKNOWN_VARIABLE = "UNKNOWN_VARIABLE"
