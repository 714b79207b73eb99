"""Serializers of the runtime API."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.urls import reverse
from rest_framework import serializers

from automation.models import ActionRun, Event, Export, Note, Run, RunStatus, Secret, StepStatus

if TYPE_CHECKING:
    from workflows.models import Workflow


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(
        help_text="The username of who raised it (null: the system, a schedule, a step)."
    )

    class Meta:
        model = Event
        fields = [
            "id",
            "type",
            "source",
            "payload",
            "actor",
            "entity_type",
            "entity_id",
            "idempotency_key",
            "causation_depth",
            "caused_by_run",
            "occurred_at",
            "dispatched_at",
            "dispatch_attempts",
            "dispatch_after",
            "dispatch_error",
        ]

    def get_actor(self, event: Event) -> str | None:
        return event.actor.get_username() if event.actor is not None else None


EVENT_TYPE_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"
EVENT_TYPE_MAX_LENGTH = 150
_EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+")


class EventCreateSerializer(serializers.Serializer):
    type = serializers.RegexField(
        EVENT_TYPE_PATTERN,
        max_length=EVENT_TYPE_MAX_LENGTH,
        error_messages={"invalid": "must look like 'deal.won': lowercase words joined by dots"},
    )
    payload = serializers.JSONField(required=False, default=dict)

    def validate_payload(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value


def event_create_input(data: object) -> tuple[str, dict[str, Any]] | None:
    """``(type, payload)`` of a request body that ``EventCreateSerializer`` accepts as it
    is, checked without building the serializer; None for anything else (a missing, blank,
    malformed or untrimmed type, a payload that is not an object, a body that is not a
    JSON object), which the serializer then validates and words the errors for.

    A type that matches the pattern whole has no whitespace to trim and no NUL or
    surrogate characters; a JSON object parsed from the body always encodes back (the
    parser refuses NaN and Infinity), which is all the payload field checks.
    """
    if type(data) is not dict:
        return None
    event_type = data.get("type")
    if (
        type(event_type) is not str
        or len(event_type) > EVENT_TYPE_MAX_LENGTH
        or _EVENT_TYPE.fullmatch(event_type) is None
    ):
        return None
    payload = data.get("payload", {})
    if type(payload) is not dict:
        return None
    return event_type, payload


class EventAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    status = serializers.CharField()


class ActionRunSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="null until the step has finished."
    )

    class Meta:
        model = ActionRun
        fields = [
            "id",
            "step_key",
            "type",
            "position",
            "status",
            "attempts",
            "input",
            "output",
            "progress",
            "error",
            "error_code",
            "wake_at",
            "waiting_on",
            "started_at",
            "finished_at",
            "duration_ms",
        ]


class RunListSerializer(serializers.ModelSerializer):
    workflow: serializers.SlugRelatedField[Workflow] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    version = serializers.IntegerField(source="version.number", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    duration_ms = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="null until the run has finished."
    )
    trigger_key = serializers.SerializerMethodField(
        help_text="The key of the trigger that started the run (null: started by hand)."
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "workflow",
            "version",
            "event",
            "event_type",
            "trigger_index",
            "trigger_key",
            "status",
            "error",
            "error_code",
            "causation_depth",
            "rerun_of",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
        ]

    def get_trigger_key(self, run: Run) -> str | None:
        triggers = run.version.definition.get("triggers") or []
        index = run.trigger_index
        if index is None or not 0 <= index < len(triggers):
            return None
        return triggers[index].get("key")


class RunDetailSerializer(RunListSerializer):
    action_runs = ActionRunSerializer(many=True, read_only=True)

    class Meta(RunListSerializer.Meta):
        fields = [*RunListSerializer.Meta.fields, "context", "action_runs"]


class RunHistoryEntrySerializer(serializers.Serializer):
    """One moment of a run: ``what`` is run.created, run.started, step.started,
    step.<status> or run.<status>; the other keys come with the kinds that have them."""

    at = serializers.DateTimeField()
    what = serializers.CharField()
    event = serializers.CharField(required=False, help_text="run.created: the event type.")
    step = serializers.CharField(required=False, help_text="step.*: the step's key.")
    attempts = serializers.IntegerField(required=False, help_text="step.started.")
    error = serializers.CharField(required=False, allow_null=True)
    error_code = serializers.CharField(required=False, allow_null=True)


class RunHistorySerializer(serializers.Serializer):
    run = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    history = RunHistoryEntrySerializer(many=True)


class RunOperationSerializer(serializers.Serializer):
    """Suspend, resume, cancel, retry and rerun take no input: the run is in the URL."""


class NoteSerializer(serializers.ModelSerializer):
    entity_type = serializers.SerializerMethodField()
    entity_id = serializers.CharField(source="object_id", read_only=True)
    author = serializers.SerializerMethodField()
    run = serializers.SerializerMethodField()

    class Meta:
        model = Note
        fields = [
            "id",
            "entity_type",
            "entity_id",
            "note",
            "visibility",
            "author",
            "run",
            "created_at",
        ]
        read_only_fields = fields

    def get_entity_type(self, note: Note) -> str:
        return self.context.get("entity_type", "")

    def get_author(self, note: Note) -> str | None:
        return note.author.get_username() if note.author is not None else None

    def get_run(self, note: Note) -> int | None:
        return note.action_run.run_id if note.action_run is not None else None


def export_status(export: Export) -> str:
    """pending, running, completed, failed or cancelled: the file once written, else the
    state of the step writing it (an export whose step is gone never finishes: failed)."""
    if export.finished_at and export.file:
        return "completed"
    step = export.action_run
    if step is None or step.status == StepStatus.FAILED:
        return "failed"
    if step.status in (StepStatus.CANCELLED, StepStatus.SKIPPED):
        return "cancelled"
    return "running" if step.status == StepStatus.RUNNING else "pending"


class ExportSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField(
        help_text="pending, running, completed, failed or cancelled."
    )
    progress = serializers.SerializerMethodField(
        help_text="{phase, rows_written, total, percent} while it runs."
    )
    error = serializers.SerializerMethodField()
    run = serializers.SerializerMethodField()
    requested_by = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text="Where to fetch the CSV once it is written (this API, same permission)."
    )

    class Meta:
        model = Export
        fields = [
            "id",
            "entity_type",
            "export_type",
            "fields",
            "filters",
            "status",
            "progress",
            "row_count",
            "error",
            "run",
            "requested_by",
            "created_at",
            "finished_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_status(self, export: Export) -> str:
        return export_status(export)

    def get_progress(self, export: Export) -> dict[str, Any] | None:
        return export.action_run.progress if export.action_run is not None else None

    def get_error(self, export: Export) -> str | None:
        step = export.action_run
        return step.error or None if step is not None and step.status == "failed" else None

    def get_run(self, export: Export) -> int | None:
        return export.action_run.run_id if export.action_run is not None else None

    def get_requested_by(self, export: Export) -> str | None:
        return export.requested_by.get_username() if export.requested_by is not None else None

    def get_download_url(self, export: Export) -> str | None:
        if not (export.finished_at and export.file):
            return None
        path = reverse("export-api-download", args=[export.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


# A secret's name, as templates write it ({{secrets.NAME}}).
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}\Z")


class SecretSerializer(serializers.ModelSerializer):
    """A stored secret: its name and description, never its value. ``value`` is write-only
    (required to create; on update, given to replace the value)."""

    value = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        max_length=10000,
        style={"input_type": "password"},
    )
    name = serializers.RegexField(
        SECRET_NAME,
        max_length=100,
        error_messages={"invalid": "use letters, digits and '_', not starting with a digit"},
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    has_value = serializers.SerializerMethodField()

    class Meta:
        model = Secret
        fields = ["id", "name", "description", "value", "has_value", "created_at", "updated_at"]
        read_only_fields = ["id", "has_value", "created_at", "updated_at"]

    def get_has_value(self, secret: Secret) -> bool:
        return bool(secret.value_encrypted)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("value"):
            raise serializers.ValidationError({"value": ["a secret needs a value"]})
        if "value" in attrs and attrs["value"] == "":
            raise serializers.ValidationError({"value": ["must not be empty"]})
        return attrs
