"""Writes of workflow definitions. Every change is validated whole and published.

Saving a definition (API, admin, import) replaces the workflow's triggers and steps and,
when the document differs from the latest version, snapshots a new ``WorkflowVersion``
that new runs start on. Runs already under way keep the version they started with.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import ProtectedError

from automation.matcher import definitions_changed
from workflows.definition import normalise, validate_definition
from workflows.errors import DefinitionInvalid, WorkflowInUse
from workflows.models import Action, Trigger, Workflow, WorkflowVersion
from workflows.selectors import latest_version, workflow_definition


def definition_check(document: Any) -> dict[str, Any]:
    """Validate a document; raise ``DefinitionInvalid`` naming every JSON path at fault."""
    issues = validate_definition(document)
    if issues:
        raise DefinitionInvalid.from_issues(issues)
    return normalise(document)


@transaction.atomic
def workflow_save(*, document: dict[str, Any], workflow: Workflow | None = None,
                  user: AbstractBaseUser | None = None) -> Workflow:
    """Create or replace a workflow from its JSON document and publish it."""
    definition = definition_check(document)
    if workflow is None:
        workflow = Workflow.objects.filter(slug=definition["slug"]).first() or Workflow(
            created_by=user if getattr(user, "pk", None) else None)
    else:
        workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    workflow.slug = definition["slug"]
    workflow.name = definition["name"]
    workflow.description = definition["description"]
    workflow.is_active = definition["is_active"]
    workflow.save()
    _sync_rows(workflow, definition)
    workflow.published_version = workflow_publish(workflow=workflow, user=user)
    return workflow


def _sync_rows(workflow: Workflow, definition: dict[str, Any]) -> None:
    """Make the authoring rows equal the document, keeping the ids of rows that stay.

    Steps are matched by key, triggers by position (the document lists them by id).
    """
    triggers = list(workflow.triggers.order_by("id"))
    for index, data in enumerate(definition["triggers"]):
        if index < len(triggers):
            row = triggers[index]
            for name, value in data.items():
                setattr(row, name, value)
            row.save()
        else:
            Trigger.objects.create(workflow=workflow, **data)
    Trigger.objects.filter(pk__in=[t.pk for t in triggers[len(definition["triggers"]):]]).delete()

    steps = {row.key: row for row in workflow.steps.all()}
    keys = [data["key"] for data in definition["steps"]]
    workflow.steps.exclude(key__in=keys).delete()
    for position, data in enumerate(definition["steps"]):
        row = steps.get(data["key"]) or Action(workflow=workflow)
        row.position = position
        for name, value in data.items():
            setattr(row, name, value)
        row.save()


@transaction.atomic
def workflow_publish(*, workflow: Workflow, user: AbstractBaseUser | None = None
                     ) -> WorkflowVersion:
    """Snapshot the workflow's rows as a new version (or keep the latest if unchanged)."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    definition = definition_check(workflow_definition(workflow))
    latest = latest_version(workflow)
    if latest is not None and latest.definition == definition:
        version = latest
    else:
        version = WorkflowVersion.objects.create(
            workflow=workflow, number=(latest.number + 1) if latest else 1,
            definition=definition, created_by=user if getattr(user, "pk", None) else None,
        )
    workflow.published_version = version
    workflow.save(update_fields=["published_version", "updated_at"])
    definitions_changed()
    return version


@transaction.atomic
def workflow_set_active(*, workflow: Workflow, is_active: bool,
                        user: AbstractBaseUser | None = None) -> Workflow:
    document = workflow_definition(workflow)
    document["is_active"] = is_active
    return workflow_save(document=document, workflow=workflow, user=user)


@transaction.atomic
def version_restore(*, version: WorkflowVersion, user: AbstractBaseUser | None = None
                    ) -> Workflow:
    """Make an older version current again (as a new version, so history stays linear)."""
    document = dict(version.definition)
    document["slug"] = version.workflow.slug
    return workflow_save(document=document, workflow=version.workflow, user=user)


@transaction.atomic
def workflow_delete(*, workflow: Workflow) -> None:
    try:
        workflow.delete()
    except ProtectedError:
        raise WorkflowInUse() from None
    definitions_changed()


def _edit_part(workflow: Workflow, part: str, index: int | None, value: dict[str, Any] | None,
               user: AbstractBaseUser | None) -> Workflow:
    document = workflow_definition(workflow)
    items = document[part]
    if index is None:
        items.append(value)
    elif value is None:
        items.pop(index)
    else:
        items[index] = value
    return workflow_save(document=document, workflow=workflow, user=user)


@transaction.atomic
def trigger_save(*, workflow: Workflow, data: dict[str, Any], trigger: Trigger | None = None,
                 user: AbstractBaseUser | None = None) -> Trigger:
    """Add or change one trigger; the whole workflow is re-validated and published."""
    ordered = list(workflow.triggers.order_by("id").values_list("pk", flat=True))
    index = ordered.index(trigger.pk) if trigger is not None else None
    _edit_part(workflow, "triggers", index, data, user)
    position = index if index is not None else len(ordered)
    return workflow.triggers.order_by("id")[position]


@transaction.atomic
def trigger_delete(*, trigger: Trigger, user: AbstractBaseUser | None = None) -> None:
    workflow = trigger.workflow
    ordered = list(workflow.triggers.order_by("id").values_list("pk", flat=True))
    _edit_part(workflow, "triggers", ordered.index(trigger.pk), None, user)


@transaction.atomic
def action_save(*, workflow: Workflow, data: dict[str, Any], action: Action | None = None,
                user: AbstractBaseUser | None = None) -> Action:
    """Add or change one step; the whole workflow is re-validated and published."""
    index = None
    if action is not None:
        ordered = list(workflow.steps.order_by("position", "id").values_list("key", flat=True))
        index = ordered.index(action.key)
    _edit_part(workflow, "steps", index, data, user)
    return workflow.steps.get(key=data["key"])


@transaction.atomic
def action_delete(*, action: Action, user: AbstractBaseUser | None = None) -> None:
    workflow = action.workflow
    ordered = list(workflow.steps.order_by("position", "id").values_list("key", flat=True))
    _edit_part(workflow, "steps", ordered.index(action.key), None, user)
