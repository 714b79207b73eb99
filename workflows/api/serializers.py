"""Serializers of the authoring API. Writes are validated whole by the definition service."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from workflows.models import Action, Trigger, Workflow, WorkflowVersion
from workflows.selectors import working_definition


class TriggerSerializer(serializers.ModelSerializer):
    """A trigger; its ``key`` (its identity in the document) is given when it is created
    and stays, and with it the trigger's id."""

    workflow = serializers.SlugRelatedField(slug_field="slug", queryset=Workflow.objects.all())
    key = serializers.CharField(read_only=True)

    class Meta:
        model = Trigger
        fields = ["id", "workflow", "key", "event_type", "conditions", "priority", "is_active"]


class ActionSerializer(serializers.ModelSerializer):
    workflow = serializers.SlugRelatedField(slug_field="slug", queryset=Workflow.objects.all())
    config = serializers.JSONField(required=False)
    conditions = serializers.JSONField(required=False, allow_null=True)
    after = serializers.JSONField(required=False, allow_null=True)
    retry = serializers.JSONField(required=False, allow_null=True)

    class Meta:
        model = Action
        fields = [
            "id",
            "workflow",
            "key",
            "position",
            "type",
            "config",
            "conditions",
            "after",
            "allow_failure",
            "retry",
            "timeout_seconds",
        ]
        read_only_fields = ["position"]
        validators: list = []  # uniqueness is checked with the whole definition


class VersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField(help_text="A username (null: no one).")

    class Meta:
        model = WorkflowVersion
        fields = ["id", "number", "definition", "created_by", "created_at"]

    def get_created_by(self, version: WorkflowVersion) -> str | None:
        return version.created_by.get_username() if version.created_by is not None else None


class WorkflowSerializer(serializers.ModelSerializer):
    """Read shape: the workflow with the document being edited (its draft if it has one,
    else its current version), triggers and steps nested. ``version`` is the published
    version new runs start on (None: never published); ``has_draft`` says whether the
    document differs from it, unpublished."""

    name = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    is_active = serializers.SerializerMethodField()
    triggers = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()
    has_draft = serializers.BooleanField(read_only=True)

    class Meta:
        model = Workflow
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "is_active",
            "version",
            "has_draft",
            "draft_updated_at",
            "triggers",
            "steps",
            "created_at",
            "updated_at",
        ]

    def get_name(self, workflow: Workflow) -> str:
        return self._definition(workflow)["name"]

    def get_description(self, workflow: Workflow) -> str:
        return self._definition(workflow)["description"]

    def get_is_active(self, workflow: Workflow) -> bool:
        return self._definition(workflow)["is_active"]

    def get_triggers(self, workflow: Workflow) -> list[dict[str, Any]]:
        return self._definition(workflow)["triggers"]

    def get_steps(self, workflow: Workflow) -> list[dict[str, Any]]:
        return self._definition(workflow)["steps"]

    def get_version(self, workflow: Workflow) -> int | None:
        version = workflow.published_version
        return version.number if version else None

    def _definition(self, workflow: Workflow) -> dict[str, Any]:
        cache = self.context.setdefault("_definitions", {})
        if workflow.pk not in cache:
            cache[workflow.pk] = working_definition(workflow)
        return cache[workflow.pk]


class WorkflowDocumentSerializer(serializers.Serializer):
    """Write shape: the JSON document. Only the structure is checked here; the definition
    service validates the content and names every JSON path at fault."""

    slug = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)
    triggers = serializers.JSONField(required=False)
    steps = serializers.JSONField(required=False)


class SimulateSerializer(serializers.Serializer):
    event_type = serializers.CharField(
        required=False, help_text="Default: the stored event's type, else the first trigger's."
    )
    payload = serializers.JSONField(
        required=False,
        default=dict,
        help_text="The event's data. For a model event (lead.created) the object's fields; "
        "for a domain event what emit() would pass.",
    )
    entity_id = serializers.CharField(
        required=False,
        help_text="Take the context from this stored object of the event's model "
        "(payload keys override its fields).",
    )
    event_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Take the context from this stored event, as its run would start from.",
    )
    sample = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Use a sample of the event type (also the default when no payload, "
        "entity_id or event_id is given).",
    )


class ExecuteSerializer(serializers.Serializer):
    payload = serializers.JSONField(required=False, default=dict)


class NoInputSerializer(serializers.Serializer):
    """The operation takes no input: what it acts on is in the URL."""
