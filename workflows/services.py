"""Writes of workflow definitions. Every change is validated whole.

Saving a document (API, admin, import) writes the workflow's draft and keeps its authoring
rows equal to it; nothing that runs changes. ``workflow_publish`` validates the draft and,
when it differs from the latest version, snapshots it as a new ``WorkflowVersion`` that new
runs start on. Runs already under way keep the version they started with. A new workflow
starts as a draft with no published version: nothing runs it until it is published.
``workflow_save`` (save and publish at once) is for host code, seeds and imports with
``--publish``.

Steps are identified by their ``key``, triggers by theirs: a trigger the document gives
without a key takes the key of the trigger it equals in the document being replaced, or
else of one on the same event type (so a client that sends triggers back without their
keys keeps them), or else a new one, never the key of a trigger that existed. Rows follow
the keys, so a trigger keeps its id (the API's ``triggers/{id}/``) across edits, reorders
and republishing.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from automation.graph import KEY_PATTERN
from automation.matcher import definitions_changed, event_high_water
from config.issues import Issue, IssueCode, error_issues
from workflows.definition import normalise, validate_definition
from workflows.errors import DefinitionInvalid, DraftOnly, WorkflowInUse
from workflows.models import Action, Trigger, Workflow, WorkflowVersion
from workflows.selectors import latest_version, workflow_definition, working_definition


def trigger_key_issues(document: Any) -> list[Issue]:
    """A trigger's ``key``, when given, is a step-style key, unique among the triggers."""
    triggers = document.get("triggers") if isinstance(document, dict) else None
    if not isinstance(triggers, list):
        return []
    issues: list[Issue] = []
    seen: set[str] = set()
    for index, trigger in enumerate(triggers):
        key = trigger.get("key") if isinstance(trigger, dict) else None
        if key is None:
            continue
        path = f"triggers[{index}].key"
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            issues.append(
                Issue(
                    path,
                    IssueCode.INVALID_VALUE,
                    "must be a lowercase letter, then lowercase letters, digits or '_' (max 64)",
                )
            )
        elif key in seen:
            issues.append(Issue(path, IssueCode.DUPLICATE, f"duplicate key '{key}'"))
        else:
            seen.add(key)
    return issues


def definition_issues(document: Any) -> list[Issue]:
    """Every problem of a document (errors and warnings), each at its JSON path."""
    return validate_definition(document) + trigger_key_issues(document)


def definition_check(
    document: Any, previous: dict[str, Any] | None = None, *, keyed: bool = True
) -> dict[str, Any]:
    """Validate a document; raise ``DefinitionInvalid`` naming every JSON path at fault
    (warnings never block). The result is normalised, with every trigger keyed against
    ``previous`` (the document it replaces) unless ``keyed`` is false."""
    issues = definition_issues(document)
    if error_issues(issues):
        raise DefinitionInvalid.from_issues(issues)
    definition = normalise(document)
    return triggers_keyed(definition, previous) if keyed else definition


def new_trigger_key(event_type: str, taken: set[str]) -> str:
    """A key for a new trigger, from its event type (``deal.won``: ``on_deal_won``), not in
    ``taken`` (which it joins)."""
    words = re.sub(r"[^a-z0-9]+", "_", str(event_type or "").lower()).strip("_") or "any"
    base = f"on_{words}"[:56]
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}_{n}"
    taken.add(key)
    return key


def _trigger_content(trigger: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in trigger.items() if name != "key"}


def triggers_keyed(definition: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``definition`` (normalised) with a key on every trigger.

    A trigger without a key takes the key of a trigger of ``previous`` that no other
    trigger claims: first one equal to it, then one on the same event type (an edited
    trigger sent back without its key); else a new key that no trigger of either document
    has had, so a removed trigger's identity never passes to another.
    """
    triggers = definition["triggers"]
    if all(t["key"] for t in triggers):
        return definition
    before = (previous or {}).get("triggers") or []
    given = {t["key"] for t in triggers if t["key"]}
    taken = given | {t.get("key") for t in before if t.get("key")}
    unclaimed = [t for t in before if t.get("key") and t["key"] not in given]
    keys: list[str | None] = [t["key"] for t in triggers]
    for alike in (
        lambda a, b: _trigger_content(a) == _trigger_content(b),
        lambda a, b: a["event_type"] == b.get("event_type"),
    ):
        for index, trigger in enumerate(triggers):
            if keys[index] is None:
                same = next((t for t in unclaimed if alike(trigger, t)), None)
                if same is not None:
                    unclaimed.remove(same)
                    keys[index] = same["key"]
    keyed = [
        {**t, "key": key or new_trigger_key(t["event_type"], taken)}
        for t, key in zip(triggers, keys, strict=True)
    ]
    return {**definition, "triggers": keyed}


def _user(user: User | None) -> User | None:
    return user if getattr(user, "pk", None) else None


def _check_slug(workflow: Workflow | None, slug: Any) -> None:
    others = Workflow.objects.filter(slug=slug)
    if workflow is not None and workflow.pk:
        others = others.exclude(pk=workflow.pk)
    if others.exists():
        raise DefinitionInvalid.from_issues([("slug", "a workflow with this slug exists")])


@transaction.atomic
def workflow_create(*, document: dict[str, Any], user: User | None = None) -> Workflow:
    """A new workflow, unpublished, with ``document`` as its draft; its slug must be free
    (``draft_save`` without a workflow would take over the one with that slug)."""
    _check_slug(None, document.get("slug"))
    return draft_save(document=document, user=user)


@transaction.atomic
def draft_save(
    *,
    document: dict[str, Any],
    workflow: Workflow | None = None,
    user: User | None = None,
) -> Workflow:
    """Write ``document`` as the workflow's draft (creating the workflow, unpublished, when
    ``workflow`` is None and no workflow has its slug). The published version, and with it
    everything the matcher and the runs read, stays as it is. A draft equal to the current
    version is no draft: it is dropped."""
    definition = definition_check(document, keyed=False)
    if workflow is None:
        workflow = Workflow.objects.filter(slug=definition["slug"]).first()
    definition = triggers_keyed(definition, working_definition(workflow) if workflow else None)
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
    user: User | None = None,
) -> Workflow:
    """Create or replace a workflow from its JSON document and publish it at once."""
    workflow = draft_save(document=document, workflow=workflow, user=user)
    workflow_publish(workflow=workflow, user=user)
    workflow.refresh_from_db()
    return workflow


def _sync_rows(workflow: Workflow, definition: dict[str, Any]) -> None:
    """Make the authoring rows equal the document, keeping the ids of rows that stay.

    Steps and triggers are matched by key (a trigger row without one, just added in the
    admin, is replaced by the document's keyed trigger).
    """
    triggers = {row.key: row for row in workflow.triggers.exclude(key="")}
    keys = [data["key"] for data in definition["triggers"]]
    workflow.triggers.exclude(key__in=keys).delete()
    workflow.triggers.filter(key="").delete()
    for position, data in enumerate(definition["triggers"]):
        row = triggers.get(data["key"]) or Trigger(workflow=workflow)
        row.position = position
        for name, value in data.items():
            setattr(row, name, value)
        row.save()

    steps = {row.key: row for row in workflow.steps.all()}
    keys = [data["key"] for data in definition["steps"]]
    workflow.steps.exclude(key__in=keys).delete()
    for position, data in enumerate(definition["steps"]):
        step = steps.get(data["key"]) or Action(workflow=workflow)
        step.position = position
        for name, value in data.items():
            setattr(step, name, value)
        step.save()


def _publish_document(
    workflow: Workflow, document: dict[str, Any], user: User | None
) -> WorkflowVersion:
    """Make ``document`` the current version (a new one unless it equals the latest). The
    caller holds the workflow's row lock and keeps or clears the draft."""
    definition = definition_check(document, working_definition(workflow))
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
def workflow_publish(*, workflow: Workflow, user: User | None = None) -> WorkflowVersion:
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
    *, workflow: Workflow, is_active: bool, user: User | None = None
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
def version_restore(*, version: WorkflowVersion, user: User | None = None) -> Workflow:
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
    user: User | None,
) -> Workflow:
    document = copy.deepcopy(working_definition(workflow))
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
    user: User | None = None,
) -> Trigger:
    """Add or change one trigger (it keeps its key: its row and id stay); the whole
    workflow is re-validated and saved as its draft."""
    keys = [t["key"] for t in working_definition(workflow)["triggers"]]
    if trigger is None:
        index = None
        data = {**data, "key": None}
    else:
        index = keys.index(trigger.key)
        data = {**data, "key": trigger.key}
    workflow = _edit_part(workflow, "triggers", index, data, user)
    saved = working_definition(workflow)["triggers"][len(keys) if index is None else index]
    return workflow.triggers.get(key=saved["key"])


@transaction.atomic
def trigger_delete(*, trigger: Trigger, user: User | None = None) -> None:
    workflow = trigger.workflow
    keys = [t["key"] for t in working_definition(workflow)["triggers"]]
    _edit_part(workflow, "triggers", keys.index(trigger.key), None, user)


@transaction.atomic
def action_save(
    *,
    workflow: Workflow,
    data: dict[str, Any],
    action: Action | None = None,
    user: User | None = None,
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
def action_delete(*, action: Action, user: User | None = None) -> None:
    workflow = action.workflow
    ordered = list(workflow.steps.order_by("position", "id").values_list("key", flat=True))
    _edit_part(workflow, "steps", ordered.index(action.key), None, user)
