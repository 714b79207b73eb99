"""Runtime API: events (the outbox and audit log) and runs (with their operations)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from automation import graphs, services
from automation.api.serializers import (
    EventAcceptedSerializer,
    EventCreateSerializer,
    EventSerializer,
    RunDetailSerializer,
    RunHistorySerializer,
    RunListSerializer,
    RunOperationSerializer,
    event_create_input,
)
from automation.events import event_submit
from automation.models import Event, Run, RunStatus
from automation.registry import registration_for_name, registrations
from automation.selectors import run_timeline
from config.filters import DateTimeFilter, ReferenceFilter, id_or_slug
from config.permissions import StaffModelPermissions
from config.requests import request_user
from workflows.models import Workflow


def graph_payload(
    steps: list[dict[str, Any]], statuses: dict[str, str] | None, title: str
) -> dict[str, Any]:
    nodes, edges = graphs.layout(steps, statuses)
    return {
        "nodes": [{"key": n.key, "type": n.type, "status": n.status} for n in nodes],
        "edges": [{"from": a, "to": b} for a, b in edges],
        "svg": graphs.to_svg(steps, statuses, title),
    }


def _entity_type(value: str) -> str:
    if registration_for_name(value) is None:
        known = ", ".join(sorted(r.name for r in registrations()))
        raise forms.ValidationError(
            f"unknown entity type {value!r} (known: {known})", code="UNKNOWN_ENTITY_TYPE"
        )
    return value


class EventFilter(django_filters.FilterSet):
    type = django_filters.CharFilter()
    type_prefix = django_filters.CharFilter(field_name="type", lookup_expr="startswith")
    occurred_after = DateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = DateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    dispatched = django_filters.BooleanFilter(
        field_name="dispatched_at", lookup_expr="isnull", exclude=True
    )
    entity_type = ReferenceFilter(
        field_name="entity_type", resolve=_entity_type, help_text="A registered model's name."
    )
    caused_by_run = ReferenceFilter(
        field_name="caused_by_run",
        resolve=id_or_slug(Run.objects.all(), slug_field=None, noun="run"),
        help_text="A run id.",
    )

    class Meta:
        model = Event
        fields = ["type", "source", "entity_type", "entity_id"]


class EventViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Events: ``POST`` raises a custom event (202 with its id); ``GET`` reads the log.

    ``POST`` honours an ``Idempotency-Key`` header (1 to 200 characters, else 400
    ``VALIDATION_ERROR``), scoped to the caller: the same caller's same key replays
    the first answer and starts nothing new; the same key with a different body is refused
    with 422. Another caller's same key is another key.
    """

    queryset = Event.objects.select_related("actor").order_by("-occurred_at", "-id")
    serializer_class = EventSerializer
    permission_classes = [StaffModelPermissions]
    filterset_class = EventFilter
    throttle_scope = "events"

    def get_serializer_class(self) -> type:
        return EventCreateSerializer if self.action == "create" else EventSerializer

    @extend_schema(
        request=EventCreateSerializer,
        responses={202: EventAcceptedSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        checked = event_create_input(request.data)
        if checked is None:  # the serializer finds what is wrong (or what to trim)
            serializer = EventCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            checked = (
                serializer.validated_data["type"],
                serializer.validated_data.get("payload") or {},
            )
        event_type, payload = checked
        event = event_submit(
            event_type=event_type,
            payload=payload,
            actor=request_user(request),
            # request.headers would build a mapping of every header for this one.
            idempotency_key=request.META.get("HTTP_IDEMPOTENCY_KEY"),
        )
        body = {"id": event.pk, "type": event.type, "status": "accepted"}
        return Response(body, status=status.HTTP_202_ACCEPTED)


class RunFilter(django_filters.FilterSet):
    workflow = ReferenceFilter(
        field_name="workflow",
        resolve=id_or_slug(Workflow.objects.all(), noun="workflow"),
        help_text="A workflow id or slug (as in its detail URL).",
    )
    event = ReferenceFilter(
        field_name="event",
        resolve=id_or_slug(Event.objects.all(), slug_field=None, noun="event"),
        help_text="An event id.",
    )
    event_type = django_filters.CharFilter(field_name="event__type")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)

    class Meta:
        model = Run
        fields = ["status", "workflow", "event", "error_code"]


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs: list and filter, detail with step runs, and the operations on a run."""

    queryset = Run.objects.select_related("workflow", "version", "event")
    permission_classes = [StaffModelPermissions]
    filterset_class = RunFilter
    ordering_fields = ["created_at", "finished_at"]
    ordering = ["-created_at", "-id"]
    change_actions = ("suspend", "resume", "cancel", "retry", "rerun")

    def get_queryset(self) -> QuerySet[Run]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("action_runs")
        return queryset

    def get_serializer_class(self) -> type:
        if self.action in self.change_actions:
            return RunOperationSerializer  # the browsable API's form for the operation
        return RunDetailSerializer if self.action == "retrieve" else RunListSerializer

    def _operate(self, operation: Any) -> Response:
        run = operation(run_id=self.get_object().pk, actor=self.request.user)
        run = self.get_queryset().prefetch_related("action_runs").get(pk=run.pk)
        return Response(RunDetailSerializer(run).data)

    @extend_schema(request=RunOperationSerializer, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str | None = None) -> Response:
        """Stop starting new steps until resumed (a step already running finishes)."""
        return self._operate(services.run_suspend)

    @extend_schema(request=RunOperationSerializer, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._operate(services.run_resume)

    @extend_schema(request=RunOperationSerializer, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._operate(services.run_cancel)

    @extend_schema(request=RunOperationSerializer, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Retry a failed run from its failed step; completed steps are not repeated."""
        return self._operate(services.run_retry)

    @extend_schema(request=RunOperationSerializer, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str | None = None) -> Response:
        """Start the same event again as a new run on the workflow's current version."""
        return self._operate(services.run_rerun)

    @extend_schema(
        responses=OpenApiResponse(
            description="Nodes (with each step's state), edges and an SVG picture."
        )
    )
    @action(detail=True, methods=["get"])
    def graph(self, request: Request, pk: str | None = None) -> Response:
        """The run's step graph with each step's state, as data and as an SVG picture."""
        run = self.get_object()
        statuses = graphs.run_statuses(run)
        return Response(
            graph_payload(run.version.definition.get("steps") or [], statuses, f"run #{run.pk}")
        )

    @extend_schema(responses=RunHistorySerializer)
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str | None = None) -> Response:
        """The run's timeline: when it started, each step's attempts and outcome, the end."""
        run = self.get_object()
        entries = run_timeline(run)
        return Response({"run": run.pk, "status": run.status, "history": entries})
