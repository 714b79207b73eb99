"""Lifecycle API: CRUD of lifecycle documents (staff with the model permissions)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.permissions import ScopedReadOrStaffModelPermissions, StaffModelPermissions
from tasks_inbox.api.serializers import LifecycleDocumentSerializer
from tasks_inbox.lifecycle_stats import DEFAULT_DAYS, lifecycle_stats, stats_window
from tasks_inbox.lifecycles import (
    LifecycleInvalid,
    lifecycle_delete,
    lifecycle_document,
    lifecycle_issues,
    lifecycle_save,
)
from tasks_inbox.selectors import tasks_visible_to
from workflows.models import Lifecycle


class LifecycleSerializer(serializers.Serializer):
    """Read shape: the lifecycle's document (states and transitions nested)."""

    id = serializers.IntegerField(read_only=True)
    slug = serializers.SlugField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    states = serializers.JSONField(
        help_text="[{key, label, is_initial, is_final, is_enabled, is_cancellation, pauses_sla, "
        "description}]"
    )
    transitions = serializers.JSONField(
        help_text="[{action, label, from_states, to_state, "
        "guard, allowed, required_input, "
        "unassign, is_enabled, on_claim, on_complete, description}]"
    )

    def to_representation(self, instance: Lifecycle) -> dict[str, Any]:
        return lifecycle_document(instance)


class LifecycleViewSet(viewsets.ModelViewSet):
    """Lifecycles as documents. A write is validated whole; errors name each JSON path
    (``transitions[2].to_state: unknown state 'aproved'``). Staff with the model
    permissions read and write them all; anyone else reads the lifecycles of the tasks
    they can see."""

    queryset = Lifecycle.objects.prefetch_related("states", "transitions").order_by("name")
    serializer_class = LifecycleSerializer
    permission_classes = [ScopedReadOrStaffModelPermissions]
    lookup_value_regex = "[^/]+"
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Lifecycle]:
        queryset = super().get_queryset()
        user = self.request.user
        if user.is_authenticated and not user.is_staff:
            visible = tasks_visible_to(user).order_by().values("lifecycle_id")
            queryset = queryset.filter(pk__in=visible)
        return queryset

    def get_serializer_class(self) -> type:
        if self.action in ("create", "update", "partial_update", "validate"):
            return LifecycleDocumentSerializer
        return LifecycleSerializer

    def get_object(self) -> Lifecycle:
        lookup = self.kwargs["pk"]
        queryset = self.get_queryset()
        by_id = lookup.isascii() and lookup.isdigit() and len(lookup) <= 18
        found = (queryset.filter(pk=int(lookup)) if by_id else queryset.filter(slug=lookup)).first()
        if found is None:
            from config.errors import NotFound

            raise NotFound(f"Lifecycle {lookup} not found.")
        self.check_object_permissions(self.request, found)
        return found

    def _document(self, request: Request, base: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise LifecycleInvalid.from_issues([("", "a lifecycle must be a JSON object")])
        document = {**(base or {}), **request.data}
        document.pop("id", None)
        return document

    @extend_schema(request=LifecycleDocumentSerializer, responses={201: LifecycleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        lifecycle = lifecycle_save(document=self._document(request, None))
        return Response(lifecycle_document(lifecycle), status=status.HTTP_201_CREATED)

    @extend_schema(request=LifecycleDocumentSerializer, responses=LifecycleSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        lifecycle = self.get_object()
        base = lifecycle_document(lifecycle) if kwargs.get("partial") else {"slug": lifecycle.slug}
        lifecycle = lifecycle_save(document=self._document(request, base), lifecycle=lifecycle)
        return Response(lifecycle_document(Lifecycle.objects.get(pk=lifecycle.pk)))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        lifecycle_delete(lifecycle=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=LifecycleDocumentSerializer,
        responses={200: OpenApiResponse(description="The document is valid.")},
    )
    @action(detail=False, methods=["post"])
    def validate(self, request: Request) -> Response:
        """Validate a lifecycle document without saving it."""
        issues = lifecycle_issues(request.data)
        if issues:
            raise LifecycleInvalid.from_issues(issues)
        return Response({"valid": True})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "days",
                int,
                description=f"Window ending now (default {DEFAULT_DAYS}); or give since.",
            ),
            OpenApiParameter("since", str, description="Start of the window (ISO 8601)."),
            OpenApiParameter("until", str, description="End of the window (default: now)."),
        ],
        responses=OpenApiResponse(
            description="{lifecycle, since, until, tasks, "
            "transitions_fired, states: [{key, label, "
            "tasks, stays, median_seconds, ...}], "
            "actions: [{action, label, fired, ...}]}"
        ),
    )
    @action(detail=True, methods=["get"], permission_classes=[StaffModelPermissions])
    def stats(self, request: Request, pk: str | None = None) -> Response:
        """Tasks per state now; transitions fired per action in the window; the median
        time spent in each state, over the stays (from the task history) that ended in
        the window. Staff with the lifecycle permissions only: the figures count every
        task on the lifecycle, not only those the caller can see."""
        lifecycle = self.get_object()
        since, until = stats_window(request.query_params)
        return Response(lifecycle_stats(lifecycle=lifecycle, since=since, until=until))
