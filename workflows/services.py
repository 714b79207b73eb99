"""Writes of workflow definitions. Every change is validated whole.

Saving a document (API, admin, import) writes the workflow's draft and keeps its authoring
rows equal to it; nothing that runs changes. ``workflow_publish`` validates the draft and,
when it differs from the latest version, snapshots it as a new ``WorkflowVersion`` that new
runs start on. Runs already under way keep the version they started with. A new workflow
starts as a draft with no published version: nothing runs it until it is published.
``workflow_save`` (save and publish at once) is for host code, seeds and imports with
``--publish``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from automation.matcher import definitions_changed, event_high_water
from workflows.definition import normalise, validate_definition
from workflows.errors import DefinitionInvalid, DraftOnly, WorkflowInUse
from workflows.models import Action, Trigger, Workflow, WorkflowVersion
from workflows.selectors import latest_version, workflow_definition, working_definition


def definition_check(document: Any) -> dict[str, Any]:
    """Validate a document; raise ``DefinitionInvalid`` naming every JSON path at fault."""
    issues = validate_definition(document)
    if issues:
        raise DefinitionInvalid.from_issues(issues)
    return normalise(document)


def _user(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if getattr(user, "pk", None) else None


def _check_slug(workflow: Workflow | None, slug: str) -> None:
    others = Workflow.objects.filter(slug=slug)
    if workflow is not None and workflow.pk:
        others = others.exclude(pk=workflow.pk)
    if others.exists():
        raise DefinitionInvalid.from_issues([("slug", "a workflow with this slug exists")])


@transaction.atomic
def draft_save(
    *,
    document: dict[str, Any],
    workflow: Workflow | None = None,
    user: AbstractBaseUser | None = None,
) -> Workflow:
    """Write ``document`` as the workflow's draft (creating the workflow, unpublished, when
    ``workflow`` is None and no workflow has its slug). The published version, and with it
    everything the matcher and the runs read, stays as it is. A draft equal to the current
    version is no draft: it is dropped."""
    definition = definition_check(document)
    if workflow is None:
        workflow = Workflow.objects.filter(slug=definition["slug"]).first()
    if workflow is None:
        workflow = Workflow.objects.create(
            slug=definition["slug"],
            name=definition["name"],
            description=definition["description"],
            is_active=definition["is_active"],
            created_by=_user(user),
        )
    else:
        workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
        _check_slug(workflow, definition["slug"])
        # The workflow's own fields are the published ones (the matcher reads is_active);
        # a never-published workflow has only its draft's.
        own = workflow.published_version.definition if workflow.published_version else definition
        for name in ("slug", "name", "description", "is_active"):
            setattr(workflow, name, own[name])
    published = workflow.published_version
    if published is not None and published.definition == definition:
        workflow.draft = None
    else:
        workflow.draft = definition
    workflow.draft_updated_at = timezone.now()
    workflow.draft_updated_by = _user(user)
    workflow.save()
    _sync_rows(workflow, definition)
    return workflow


@transaction.atomic
def workflow_save(
    *,
    document: dict[str, Any],
    workflow: Workflow | None = None,
    user: AbstractBaseUser | None = None,
) -> Workflow:
    """Create or replace a workflow from its JSON document and publish it at once."""
    workflow = draft_save(document=document, workflow=workflow, user=user)
    workflow_publish(workflow=workflow, user=user)
    workflow.refresh_from_db()
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
    Trigger.objects.filter(pk__in=[t.pk for t in triggers[len(definition["triggers"]) :]]).delete()

    steps = {row.key: row for row in workflow.steps.all()}
    keys = [data["key"] for data in definition["steps"]]
    workflow.steps.exclude(key__in=keys).delete()
    for position, data in enumerate(definition["steps"]):
        row = steps.get(data["key"]) or Action(workflow=workflow)
        row.position = position
        for name, value in data.items():
            setattr(row, name, value)
        row.save()


def _publish_document(
    workflow: Workflow, document: dict[str, Any], user: AbstractBaseUser | None
) -> WorkflowVersion:
    """Make ``document`` the current version (a new one unless it equals the latest). The
    caller holds the workflow's row lock and keeps or clears the draft."""
    definition = definition_check(document)
    _check_slug(workflow, definition["slug"])
    latest = latest_version(workflow)
    current = workflow.published_version
    if latest is not None and latest.definition == definition:
        version = latest
    else:
        version = WorkflowVersion.objects.create(
            workflow=workflow,
            number=(latest.number + 1) if latest else 1,
            definition=definition,
            created_by=_user(user),
        )
    if version != current:
        # Events written until now meet the version that was current; later ones this one.
        mark = event_high_water()
        if current is not None:
            current.retired_after_event = mark
            current.save(update_fields=["retired_after_event"])
        version.live_after_event = mark
        version.retired_after_event = None
        version.save(update_fields=["live_after_event", "retired_after_event"])
    workflow.slug = definition["slug"]
    workflow.name = definition["name"]
    workflow.description = definition["description"]
    workflow.is_active = definition["is_active"]
    workflow.published_version = version
    workflow.save()
    definitions_changed(workflow.pk)
    return version


@transaction.atomic
def workflow_publish(
    *, workflow: Workflow, user: AbstractBaseUser | None = None
) -> WorkflowVersion:
    """Validate the draft and make it the next version, in one transaction. Without a draft
    the working document (the rows) is published, which keeps the current version when it
    has not changed."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    document = workflow.draft if workflow.draft is not None else workflow_definition(workflow)
    version = _publish_document(workflow, document, user)
    workflow.draft = None
    workflow.draft_updated_at = None
    workflow.draft_updated_by = None
    workflow.save(update_fields=["draft", "draft_updated_at", "draft_updated_by"])
    _sync_rows(workflow, version.definition)
    return version


@transaction.atomic
def draft_discard(*, workflow: Workflow) -> Workflow:
    """Drop the draft; the rows go back to the current version. A workflow that was never
    published is nothing but its draft: it is deleted, not discarded (``DRAFT_ONLY``)."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.published_version is None:
        raise DraftOnly()
    workflow.draft = None
    workflow.draft_updated_at = None
    workflow.draft_updated_by = None
    workflow.save(update_fields=["draft", "draft_updated_at", "draft_updated_by", "updated_at"])
    _sync_rows(workflow, workflow.published_version.definition)
    return workflow


@transaction.atomic
def workflow_set_active(
    *, workflow: Workflow, is_active: bool, user: AbstractBaseUser | None = None
) -> Workflow:
    """Switch a workflow on or off now: published as a new version; a draft keeps its edits
    and takes the new state too. A never-published workflow only changes its draft."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.published_version is not None:
        document = dict(workflow.published_version.definition)
        document["is_active"] = is_active
        _publish_document(workflow, document, user)
    if workflow.draft is not None:
        workflow.draft = {**workflow.draft, "is_active": is_active}
        if workflow.published_version is None:
            workflow.is_active = is_active
        workflow.save()
    _sync_rows(workflow, working_definition(workflow))
    return workflow


@transaction.atomic
def version_restore(*, version: WorkflowVersion, user: AbstractBaseUser | None = None) -> Workflow:
    """Make an older version current again (as a new version, so history stays linear).
    A draft, if any, stays as it is."""
    workflow = Workflow.objects.select_for_update().get(pk=version.workflow_id)
    document = dict(version.definition)
    document["slug"] = workflow.slug
    _publish_document(workflow, document, user)
    _sync_rows(workflow, working_definition(workflow))
    return workflow


@transaction.atomic
def workflow_delete(*, workflow: Workflow) -> None:
    workflow_id = workflow.pk
    try:
        workflow.delete()
    except ProtectedError:
        raise WorkflowInUse() from None
    definitions_changed(workflow_id)


def _edit_part(
    workflow: Workflow,
    part: str,
    index: int | None,
    value: dict[str, Any] | None,
    user: AbstractBaseUser | None,
) -> Workflow:
    document = working_definition(workflow)
    items = document[part]
    if index is None:
        items.append(value)
    elif value is None:
        items.pop(index)
    else:
        items[index] = value
    return draft_save(document=document, workflow=workflow, user=user)


@transaction.atomic
def trigger_save(
    *,
    workflow: Workflow,
    data: dict[str, Any],
    trigger: Trigger | None = None,
    user: AbstractBaseUser | None = None,
) -> Trigger:
    """Add or change one trigger; the whole workflow is re-validated and
    saved as its draft."""
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
def action_save(
    *,
    workflow: Workflow,
    data: dict[str, Any],
    action: Action | None = None,
    user: AbstractBaseUser | None = None,
) -> Action:
    """Add or change one step; the whole workflow is re-validated and
    saved as its draft."""
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
