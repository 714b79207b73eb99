"""The step types a workflow may use, with the JSON schema of each one's config.

The builder page generates each step's form from these schemas, so a step type that host
code registers with ``@step_type`` gets a form with no front-end work.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from automation.actions import WAITS, StepType, get_step_type, step_types
from config.errors import NotFound


class CanReadWorkflows(BasePermission):
    """Staff holding ``workflows.view_workflow``, as for the workflows themselves."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and user.is_staff
            and user.has_perm("workflows.view_workflow")
        )


class StepTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    description = serializers.CharField()
    schema = serializers.JSONField(help_text="JSON Schema of the unrendered config.")
    secret_fields = serializers.ListField(
        child=serializers.CharField(),
        help_text="Top-level config keys where {{secrets.NAME}} may be used.",
    )
    render_modes = serializers.DictField(
        child=serializers.CharField(),
        help_text="Escaping per top-level config key: html, header; plain when absent.",
    )
    atomic = serializers.BooleanField(
        help_text="True: its database effects commit with its step record."
    )
    waits = serializers.ChoiceField(
        choices=WAITS,
        help_text="Whether a run parks on it: never, always, or optional (its 'wait' flag).",
    )
    default_retry = serializers.JSONField(help_text="Retry policy when the step gives none.")


@extend_schema_serializer(many=False)
class StepTypeListSerializer(serializers.Serializer):
    """Every step type in one answer (an object, not a page)."""

    count = serializers.IntegerField()
    results = StepTypeSerializer(many=True)


def step_type_data(step_type: StepType) -> dict[str, Any]:
    return {
        "name": step_type.name,
        "label": step_type.label,
        "description": step_type.description,
        "schema": step_type.schema,
        "secret_fields": list(step_type.secret_fields),
        "render_modes": dict(step_type.render_modes),
        "atomic": step_type.atomic,
        "waits": step_type.waits,
        "default_retry": dict(step_type.default_retry),
    }


class StepTypeViewSet(viewsets.ViewSet):
    """Every registered step type: the engine's, the inbox's and the host's."""

    permission_classes = [CanReadWorkflows]
    lookup_value_regex = r"[A-Za-z0-9_.\-]+"
    lookup_field = "name"

    @extend_schema(responses=StepTypeListSerializer)
    def list(self, request: Request) -> Response:
        results = [step_type_data(t) for _, t in sorted(step_types().items())]
        return Response({"count": len(results), "results": results})

    @extend_schema(responses=StepTypeSerializer)
    def retrieve(self, request: Request, name: str | None = None) -> Response:
        step_type = get_step_type(name or "")
        if step_type is None:
            raise NotFound(f"There is no step type '{name}'.")
        return Response(step_type_data(step_type))
