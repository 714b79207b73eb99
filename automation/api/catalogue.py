"""``GET /api/v1/event-types/``: the event catalogue (``automation.catalogue``) for authors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from automation.catalogue import FIELD_TYPES, KINDS, event_catalogue

AUTHOR_PERMISSIONS = (
    "workflows.view_workflow",
    "workflows.add_workflow",
    "workflows.change_workflow",
)


class IsStaffOrAuthor(BasePermission):
    """Active staff, and whoever may read or write workflows."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        return bool(user.is_staff) or any(user.has_perm(perm) for perm in AUTHOR_PERMISSIONS)


class ContextFieldSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="As conditions and templates address it.")
    type = serializers.ChoiceField(choices=FIELD_TYPES)
    choices = serializers.ListField(child=serializers.JSONField(), allow_null=True)
    nullable = serializers.BooleanField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label


class RelatedObjectSerializer(serializers.Serializer):
    path = serializers.CharField()
    entity = serializers.CharField(help_text="'user' or a registered model's name.")


class EventTypeSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="e.g. lead.status_changed")
    group = serializers.CharField()
    kind = serializers.ChoiceField(choices=KINDS)
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    description = serializers.CharField(allow_blank=True)
    fields = ContextFieldSerializer(many=True)  # type: ignore[assignment]  # a declared field
    related = RelatedObjectSerializer(many=True)


@extend_schema_serializer(many=False)
class EventTypeListSerializer(serializers.Serializer):
    """The whole catalogue in one answer (an object, not a page)."""

    results = EventTypeSerializer(many=True)


class EventTypeViewSet(viewsets.ViewSet):
    """Every event type the engine can raise or accept, with the shape of its context:
    registered models' events, task and SLA events, declared domain events, scheduled
    events and manual runs. Read-only."""

    permission_classes = [IsStaffOrAuthor]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q", str, description="Only types whose type, group or label contains this."
            )
        ],
        responses=EventTypeListSerializer,
    )
    def list(self, request: Request) -> Response:
        query = request.query_params.get("q") or None
        return Response({"results": [entry.as_dict() for entry in event_catalogue(query)]})
