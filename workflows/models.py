"""Workflow definitions: the authoring rows and their published, immutable versions.

A ``Workflow`` owns ``Trigger`` rows and ``Action`` rows (its steps): the working copy that
the admin's inlines and the parts API edit. Saving a change writes the workflow's one
``draft`` (the JSON document of the workflow) and keeps the rows equal to it; nothing that
runs reads either. Publishing validates the draft and snapshots it into a ``WorkflowVersion``
whose ``definition`` is what the matcher and the runs read. Runs are pinned to a version, so
neither a draft nor a later version changes a run that is already under way. The workflow's
own fields (slug, name, description, ``is_active``) are the published ones; the draft's are
in its document.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Workflow(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    published_version = models.ForeignKey(
        "workflows.WorkflowVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version new runs start on.",
    )
    draft = models.JSONField(
        null=True,
        blank=True,
        help_text="The unpublished document being edited (the API's and export's format).",
    )
    draft_updated_at = models.DateTimeField(null=True, blank=True)
    draft_updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("admin:workflows_workflow_change", args=[self.pk])

    @property
    def has_draft(self) -> bool:
        return self.draft is not None


class Trigger(models.Model):
    """One trigger of a workflow. ``key`` is its identity within the workflow, kept in the
    document, so a trigger keeps its row (and its id in the API) across edits, reorders and
    republishing; ``position`` is its place in the document."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    key = models.SlugField(
        max_length=64,
        blank=True,
        default="",
        help_text="The trigger's identity in the document (given when it is saved).",
    )
    position = models.PositiveIntegerField(default=0)
    event_type = models.CharField(
        max_length=150,
        db_index=True,
        help_text="An event type such as 'lead.created', or a pattern such as 'deal.*'.",
    )
    conditions = models.JSONField(
        null=True,
        blank=True,
        help_text='Condition DSL, e.g. {"field": "budget", "operator": "gte", "value": 50000}.',
    )
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["-priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "key"],
                condition=~models.Q(key=""),
                name="trigger_key_unique_in_workflow",
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow} on {self.event_type}"


class Action(models.Model):
    """One step of a workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    key = models.SlugField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    type = models.CharField(max_length=64)
    config = models.JSONField(default=dict, blank=True)
    conditions = models.JSONField(null=True, blank=True)
    after = models.JSONField(
        null=True,
        blank=True,
        help_text="Keys of the steps this one waits for; empty means the previous step.",
    )
    allow_failure = models.BooleanField(default=False)
    retry = models.JSONField(
        null=True,
        blank=True,
        help_text='e.g. {"max_attempts": 5, "backoff_seconds": 2, "max_backoff_seconds": 300}',
    )
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["workflow", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "key"], name="action_unique_key"),
        ]
        verbose_name = "step"

    def __str__(self) -> str:
        return f"{self.key} ({self.type})"


class WorkflowVersion(models.Model):
    """An immutable snapshot of a workflow's definition."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The version's live window, in event ids (ids grow as event rows are written): an event
    # meets the versions that were current when it was written, however late it is
    # dispatched. None: live for every earlier (or later) event.
    live_after_event = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Events with a greater id meet this version (None: every event).",
    )
    retired_after_event = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Events with a greater id meet a later version (None: still current).",
    )

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="version_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug} v{self.number}"


class Lifecycle(models.Model):
    """A state machine for tasks, kept as data: its states and the transitions between them.

    Rows are written through ``tasks_inbox.lifecycles.lifecycle_save``, which validates the
    whole lifecycle (one initial state, unique keys, every reference exists, nothing leaves a
    final state) before it replaces the states and transitions.
    """

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LifecycleState(models.Model):
    lifecycle = models.ForeignKey(Lifecycle, on_delete=models.CASCADE, related_name="states")
    key = models.CharField(max_length=64)
    label = models.CharField(max_length=100, blank=True)
    position = models.PositiveIntegerField(default=0)
    is_initial = models.BooleanField(default=False, help_text="Tasks start here (exactly one).")
    is_final = models.BooleanField(default=False, help_text="The task is over in this state.")
    is_enabled = models.BooleanField(
        default=True,
        help_text="A disabled state cannot be entered.",
    )
    is_cancellation = models.BooleanField(
        default=False,
        help_text="A final state meaning the work was abandoned: a run waiting on the task "
        "fails instead of resuming.",
    )
    description = models.TextField(blank=True, help_text="What being in this state means.")
    pauses_sla = models.BooleanField(
        default=False,
        help_text="The SLA clock stops while the task is here (when its SLA config pauses).",
    )

    class Meta:
        ordering = ["lifecycle", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["lifecycle", "key"], name="lifecycle_state_unique"),
        ]

    def __str__(self) -> str:
        return self.label or self.key


class LifecycleTransition(models.Model):
    lifecycle = models.ForeignKey(
        Lifecycle,
        on_delete=models.CASCADE,
        related_name="transitions",
    )
    action = models.CharField(max_length=64)
    label = models.CharField(max_length=100, blank=True)
    position = models.PositiveIntegerField(default=0)
    from_states = models.JSONField(default=list, help_text="Keys of the states it leaves.")
    to_state = models.CharField(max_length=64, help_text="Key of the state it enters.")
    guard = models.JSONField(
        null=True,
        blank=True,
        help_text='Condition DSL over "task" and "actor", e.g. '
        '{"field": "actor.is_staff", "operator": "eq", "value": true}.',
    )
    allowed = models.JSONField(
        default=list,
        blank=True,
        help_text="Who may fire it: assignee, queue_member, manager, creator, staff, anyone.",
    )
    required_input = models.JSONField(
        default=list,
        blank=True,
        help_text='Input fields that must be given, e.g. ["reason"].',
    )
    unassign = models.BooleanField(
        default=False,
        help_text="Clear the assignee of a queued task (e.g. release).",
    )
    is_enabled = models.BooleanField(
        default=True,
        help_text="A disabled action is not offered and is refused (ACTION_DISABLED).",
    )
    description = models.TextField(
        blank=True,
        help_text="What the action does (the title of its button).",
    )
    on_claim = models.BooleanField(
        default=False,
        help_text="Claiming the task fires this transition (when it leaves the task's state).",
    )
    on_complete = models.BooleanField(
        default=False,
        help_text="Completing the task fires this transition (when it leaves the task's "
        "state); else the first one into a final, non-cancelling state.",
    )

    class Meta:
        ordering = ["lifecycle", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lifecycle", "action"], name="lifecycle_transition_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.label or self.action
