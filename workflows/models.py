"""Workflow definitions: the authoring rows and their published, immutable versions.

A ``Workflow`` owns ``Trigger`` rows and ``Action`` rows (its steps). These rows are what
people edit; publishing snapshots them into a ``WorkflowVersion`` whose ``definition`` is the
JSON document of the workflow. Runs are pinned to a version and read only its snapshot, so
editing a workflow never changes a run that is already under way.
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
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
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


class Trigger(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    event_type = models.CharField(
        max_length=150,
        db_index=True,
        help_text="An event type such as 'lead.created', or a pattern such as 'deal.*'.",
    )
    conditions = models.JSONField(
        null=True, blank=True,
        help_text='Condition DSL, e.g. {"field": "budget", "operator": "gte", "value": 50000}.',
    )
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["-priority", "id"]

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
        null=True, blank=True,
        help_text="Keys of the steps this one waits for; empty means the previous step.",
    )
    allow_failure = models.BooleanField(default=False)
    retry = models.JSONField(
        null=True, blank=True,
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
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="version_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug} v{self.number}"
