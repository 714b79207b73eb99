"""Serializers of the runtime API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from automation.models import ActionRun, Event, Run


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.StringRelatedField()

    class Meta:
        model = Event
        fields = ["id", "type", "source", "payload", "actor", "entity_type", "entity_id",
                  "idempotency_key", "causation_depth", "caused_by_run", "occurred_at",
                  "dispatched_at", "dispatch_attempts", "dispatch_after", "dispatch_error"]


class EventCreateSerializer(serializers.Serializer):
    type = serializers.RegexField(
        r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", max_length=150,
        error_messages={"invalid": "must look like 'deal.won': lowercase words joined by dots"},
    )
    payload = serializers.JSONField(required=False, default=dict)

    def validate_payload(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value


class EventAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    status = serializers.CharField()


class ActionRunSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(read_only=True)

    class Meta:
        model = ActionRun
        fields = ["id", "step_key", "type", "position", "status", "attempts", "input", "output",
                  "progress", "error", "error_code", "wake_at", "waiting_on", "started_at",
                  "finished_at", "duration_ms"]


class RunListSerializer(serializers.ModelSerializer):
    workflow = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    duration_ms = serializers.IntegerField(read_only=True)

    class Meta:
        model = Run
        fields = ["id", "workflow", "version", "event", "event_type", "trigger_index", "status",
                  "error", "error_code", "causation_depth", "rerun_of", "created_at",
                  "started_at", "finished_at", "duration_ms"]


class RunDetailSerializer(RunListSerializer):
    action_runs = ActionRunSerializer(many=True, read_only=True)

    class Meta(RunListSerializer.Meta):
        fields = [*RunListSerializer.Meta.fields, "context", "action_runs"]
