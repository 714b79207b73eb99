"""``add_note``: attach a note to a registered object."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType

from automation.actions import (
    StepContext,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
    templated,
)
from automation.actions.entities import entity, entity_key, entity_type_issues
from automation.models import Note, NoteVisibility
from config.inserts import model_insert
from config.issues import Issue

SCHEMA = object_schema(
    {
        "entity_type": {"type": "string", "minLength": 1},
        "entity_id": templated({"type": ["integer", "string"]}),
        "note": {"type": "string", "minLength": 1, "maxLength": 20000},
        "visibility": {"enum": list(NoteVisibility.values)},
    },
    required=["entity_type", "entity_id", "note"],
)


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """The entity type is a registered model."""
    return entity_type_issues(config, path)[1]


@step_type("add_note", schema=SCHEMA, label="Add a note", check=check_config)
def add_note(ctx: StepContext) -> StepResult:
    """Attach a note to the object; written in the step's own transaction."""
    config = ctx.config
    model, pk = entity_key(config["entity_type"], config["entity_id"])
    note = Note(
        content_type=ContentType.objects.get_for_model(model),
        object_id=str(pk),
        note=str(config["note"]),
        visibility=config.get("visibility") or NoteVisibility.INTERNAL,
        action_run=ctx.action_run,
    )
    model_insert(note)  # note.save(), its INSERT compiled once
    return StepResult(output={"note_id": note.pk})


@dry_run_for("add_note")
def add_note_dry_run(ctx: StepContext) -> dict[str, Any]:
    entity(ctx.config["entity_type"], ctx.config["entity_id"])  # read only: it must exist
    return {
        "would": "add a note",
        "entity_type": ctx.config["entity_type"],
        "entity_id": ctx.config["entity_id"],
        "note": ctx.config["note"],
    }
