"""Authoring API: workflows (with nested triggers and steps), triggers, actions."""

from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from automation.api.serializers import RunListSerializer
from automation.api.views import graph_payload
from automation.models import Run
from automation.services import workflow_execute
from config.errors import ValidationFailed
from config.filters import ReferenceFilter, id_or_slug
from config.issues import Issue, error_issues
from config.permissions import StaffModelPermissions
from config.requests import request_user
from workflows import services
from workflows.api.serializers import (
    ActionSerializer,
    ExecuteSerializer,
    NoInputSerializer,
    SimulateSerializer,
    TriggerSerializer,
    VersionSerializer,
    WorkflowDocumentSerializer,
    WorkflowSerializer,
)
from workflows.errors import UnknownVersion
from workflows.models import Action, Trigger, Workflow
from workflows.selectors import DRAFT, definition_at, definition_diff, working_definition
from workflows.simulation import simulate


def validation_response(issues: list[Issue]) -> Response:
    """400 with every error (and the warnings) when there are errors; otherwise
    ``{"valid": true}`` and the warnings, if any (warnings never block)."""
    if error_issues(issues):
        raise ValidationFailed.from_issues(issues)
    body: dict[str, Any] = {"valid": True}
    if issues:
        body["warnings"] = [issue.as_dict() for issue in issues]
    return Response(body)


class WorkflowViewSet(viewsets.ModelViewSet):
    """Workflows as JSON documents. Every write is validated whole and saved as the
    workflow's draft; ``publish/`` makes the draft the next version that new runs start on,
    and runs already under way keep the version they started with."""

    queryset = Workflow.objects.select_related("published_version").order_by("name")
    serializer_class = WorkflowSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["is_active", "slug"]
    search_fields = ["name", "slug", "description"]
    ordering_fields = ["name", "created_at", "updated_at"]
    change_actions = (
        "simulate",
        "execute",
        "validate_existing",
        "restore_version",
        "publish",
        "discard_draft",
    )

    # The input of each write, so the browsable API and the schema show its own form.
    action_serializers: dict[str, type] = {
        "create": WorkflowDocumentSerializer,
        "update": WorkflowDocumentSerializer,
        "partial_update": WorkflowDocumentSerializer,
        "validate": WorkflowDocumentSerializer,
        "simulate": SimulateSerializer,
        "execute": ExecuteSerializer,
        "validate_existing": NoInputSerializer,
        "restore_version": NoInputSerializer,
        "publish": NoInputSerializer,
        "discard_draft": NoInputSerializer,
    }

    def get_serializer_class(self) -> type:
        return self.action_serializers.get(self.action or "", WorkflowSerializer)

    def _read(self, workflow: Workflow) -> dict[str, Any]:
        return WorkflowSerializer(workflow, context=self.get_serializer_context()).data

    def _document(
        self, request: Request, partial: bool, workflow: Workflow | None
    ) -> dict[str, Any]:
        serializer = WorkflowDocumentSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        base = working_definition(workflow) if workflow is not None else {}
        if not partial:
            base = {"triggers": [], "steps": [], "description": "", "is_active": True}
        document = {**base, **request.data}
        if workflow is not None and "slug" not in request.data:
            document["slug"] = workflow.slug
        return document

    @extend_schema(request=WorkflowDocumentSerializer, responses={201: WorkflowSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        document = self._document(request, partial=False, workflow=None)
        workflow = services.workflow_create(document=document, user=request_user(request))
        return Response(self._read(workflow), status=status.HTTP_201_CREATED)

    @extend_schema(request=WorkflowDocumentSerializer, responses=WorkflowSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = self.get_object()
        partial = kwargs.get("partial", False)
        document = self._document(request, partial=partial, workflow=workflow)
        workflow = services.draft_save(
            document=document, workflow=workflow, user=request_user(request)
        )
        return Response(self._read(workflow))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.workflow_delete(workflow=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=WorkflowDocumentSerializer,
        responses={200: OpenApiResponse(description="The document is valid.")},
    )
    @action(detail=False, methods=["post"], url_path="validate")
    def validate(self, request: Request) -> Response:
        """Validate a workflow document without saving it."""
        return validation_response(services.definition_issues(request.data))

    @extend_schema(
        request=NoInputSerializer,
        responses={200: OpenApiResponse(description="Valid.")},
        operation_id="v1_workflows_validate_existing",
    )
    @action(detail=True, methods=["post"], url_path="validate")
    def validate_existing(self, request: Request, pk: str | None = None) -> Response:
        """Validate the stored workflow's draft, or its current version when it has no draft
        (after changes in its step types or models)."""
        return validation_response(
            services.definition_issues(working_definition(self.get_object()))
        )

    @extend_schema(request=NoInputSerializer, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        """Validate the draft and make it the next version, which new runs start on."""
        workflow = self.get_object()
        services.workflow_publish(workflow=workflow, user=request_user(request))
        workflow.refresh_from_db()
        return Response(self._read(workflow))

    @extend_schema(request=NoInputSerializer, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"], url_path="discard-draft")
    def discard_draft(self, request: Request, pk: str | None = None) -> Response:
        """Drop the draft; the workflow reads as its current version again."""
        workflow = services.draft_discard(workflow=self.get_object())
        return Response(self._read(workflow))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "from",
                str,
                description="A version number or 'draft'. Default: the current version.",
            ),
            OpenApiParameter("to", str, description="A version number or 'draft' (default)."),
        ],
        responses={
            200: OpenApiResponse(
                description="Workflow fields, triggers and steps added, removed and changed."
            )
        },
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk: str | None = None) -> Response:
        """What changes from one version (or the draft) to another: by default, what
        publishing the draft would change."""
        workflow = self.get_object()
        return Response(
            workflow_diff(
                workflow, request.query_params.get("from"), request.query_params.get("to") or DRAFT
            )
        )

    @extend_schema(
        request=SimulateSerializer,
        parameters=[
            OpenApiParameter(
                "version",
                str,
                description="A version number or 'draft'. Default: the current version.",
            )
        ],
        responses={200: OpenApiResponse(description="The simulation trace.")},
    )
    @action(detail=True, methods=["post"])
    def simulate(self, request: Request, pk: str | None = None) -> Response:
        """Dry-run the workflow with an event, through the engine's own matching, planning,
        rendering and step checks: which trigger matches (or, plainly, that none does),
        each step's predicted status with its reason, rendered config (secrets masked) and
        its type's dry-run description. Nothing is written and nothing is sent. It reads
        the current version unless ``?version=`` names another one or ``draft``."""
        workflow = self.get_object()
        serializer = SimulateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        which = request.query_params.get("version")
        definition = _definition_or_error(workflow, which, "version")
        data = serializer.validated_data
        payload = data.get("payload") or {}
        if not isinstance(payload, dict):
            raise ValidationFailed.from_issues([("payload", "must be an object")])
        result = simulate(
            definition,
            event_type=data.get("event_type") or None,
            payload=payload,
            entity_id=data.get("entity_id"),
            event_id=data.get("event_id"),
            sample=data.get("sample", False),
        )
        result["version"] = which or (
            workflow.published_version.number if workflow.published_version else None
        )
        return Response(result)

    @extend_schema(request=ExecuteSerializer, responses={202: RunListSerializer})
    @action(detail=True, methods=["post"])
    def execute(self, request: Request, pk: str | None = None) -> Response:
        """Start a run by hand with ``payload`` as its context."""
        serializer = ExecuteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payload = serializer.validated_data.get("payload") or {}
        if not isinstance(payload, dict):
            raise ValidationFailed.from_issues([("payload", "must be an object")])
        run = workflow_execute(
            workflow_id=self.get_object().pk, payload=payload, actor=request.user
        )
        return Response(RunListSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        versions = self.get_object().versions.select_related("created_by").order_by("-number")
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(VersionSerializer(page, many=True).data)

    @extend_schema(request=NoInputSerializer, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"], url_path=r"versions/(?P<number>\d+)/restore")
    def restore_version(
        self, request: Request, pk: str | None = None, number: str | None = None
    ) -> Response:
        """Make an older version current again (published as a new version)."""
        workflow = self.get_object()
        version = workflow.versions.filter(number=number).first()
        if version is None:
            from config.errors import NotFound

            raise NotFound(f"Version {number} of this workflow does not exist.")
        workflow = services.version_restore(version=version, user=request_user(request))
        return Response(self._read(workflow))

    @extend_schema(responses=OpenApiResponse(description="Nodes, edges and an SVG picture."))
    @action(detail=True, methods=["get"])
    def graph(self, request: Request, pk: str | None = None) -> Response:
        """The workflow's step graph, as data and as an SVG picture."""
        workflow = self.get_object()
        return Response(graph_payload(working_definition(workflow)["steps"], None, workflow.name))

    @extend_schema(responses=RunListSerializer(many=True))
    @action(detail=True, methods=["get"])
    def runs(self, request: Request, pk: str | None = None) -> Response:
        runs = (
            Run.objects.filter(workflow=self.get_object())
            .select_related("workflow", "version", "event")
            .order_by("-created_at", "-id")
        )
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(RunListSerializer(page, many=True).data)


def _definition_or_error(workflow: Workflow, which: str | None, parameter: str) -> dict[str, Any]:
    definition = definition_at(workflow, which)
    if definition is None:
        message = (
            f"Version {which} of this workflow does not exist."
            if which
            else "The workflow has no published version; pass 'draft'."
        )
        raise UnknownVersion.from_issues([(parameter, message)], message)
    return definition


def workflow_diff(workflow: Workflow, which_from: str | None, which_to: str) -> dict[str, Any]:
    """The diff between two of the workflow's documents (version numbers or ``draft``; a
    missing ``from`` is the current version, or nothing for a never-published workflow)."""
    if which_from is None:
        before = definition_at(workflow, None)
    else:
        before = _definition_or_error(workflow, which_from, "from")
    after = _definition_or_error(workflow, which_to, "to")
    version = workflow.published_version

    def label(which: str) -> int | str:
        return int(which) if which.isdigit() else which

    return {
        "from": label(which_from) if which_from else (version.number if version else None),
        "to": label(which_to),
        **definition_diff(before, after),
    }


def _workflow_filter() -> ReferenceFilter:
    return ReferenceFilter(
        field_name="workflow",
        resolve=id_or_slug(Workflow.objects.all(), noun="workflow"),
        help_text="A workflow id or slug (as in its detail URL).",
    )


class TriggerFilter(django_filters.FilterSet):
    workflow = _workflow_filter()

    class Meta:
        model = Trigger
        fields = ["workflow", "event_type", "is_active"]


class ActionFilter(django_filters.FilterSet):
    workflow = _workflow_filter()

    class Meta:
        model = Action
        fields = ["workflow", "type"]


class _PartViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [StaffModelPermissions]

    def _data(self, serializer: Any) -> dict[str, Any]:
        data = dict(serializer.validated_data)
        data.pop("workflow", None)
        data.pop("position", None)
        return data


class TriggerViewSet(_PartViewSet):
    """A workflow's triggers. Each change re-validates the workflow and saves its draft."""

    queryset = Trigger.objects.select_related("workflow").order_by("workflow", "id")
    serializer_class = TriggerSerializer
    filterset_class = TriggerFilter

    def perform_create(self, serializer: BaseSerializer[Trigger]) -> None:
        serializer.instance = services.trigger_save(
            workflow=serializer.validated_data["workflow"],
            data=self._data(serializer),
            user=request_user(self.request),
        )

    def perform_update(self, serializer: BaseSerializer[Trigger]) -> None:
        trigger = serializer.instance
        assert trigger is not None  # an update always has the object it updates
        data = {**TriggerSerializer(trigger).data, **self._data(serializer)}
        data.pop("id", None)
        data.pop("workflow", None)
        serializer.instance = services.trigger_save(
            workflow=trigger.workflow, data=data, trigger=trigger, user=request_user(self.request)
        )

    def perform_destroy(self, instance: Trigger) -> None:
        services.trigger_delete(trigger=instance, user=request_user(self.request))


class ActionViewSet(_PartViewSet):
    """A workflow's steps. Each change re-validates the workflow and saves its draft."""

    queryset = Action.objects.select_related("workflow").order_by("workflow", "position")
    serializer_class = ActionSerializer
    filterset_class = ActionFilter

    def perform_create(self, serializer: BaseSerializer[Action]) -> None:
        serializer.instance = services.action_save(
            workflow=serializer.validated_data["workflow"],
            data=self._data(serializer),
            user=request_user(self.request),
        )

    def perform_update(self, serializer: BaseSerializer[Action]) -> None:
        step = serializer.instance
        assert step is not None  # an update always has the object it updates
        data = {**ActionSerializer(step).data, **self._data(serializer)}
        for key in ("id", "workflow", "position"):
            data.pop(key, None)
        serializer.instance = services.action_save(
            workflow=step.workflow, data=data, action=step, user=request_user(self.request)
        )

    def perform_destroy(self, instance: Action) -> None:
        services.action_delete(action=instance, user=request_user(self.request))
