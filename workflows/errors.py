"""Error codes of workflow authoring."""

from __future__ import annotations

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
