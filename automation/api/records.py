"""What automation leaves behind, through the API: the notes of an object (as visible as
the object), exports (the requester's, or all with ``automation.view_export``) and stored
secrets (names and descriptions listed; values write-only, never returned)."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from automation.api.serializers import (
    SECRET_NAME,
    ExportSerializer,
    NoteSerializer,
    SecretSerializer,
    export_status,
)
from automation.models import Export, Note, NoteVisibility, Secret
from automation.registry import registration_for_name, registrations, visible_rows
from automation.secrets import secret_delete, secret_describe, secret_set
from config.errors import Conflict, NotFound, ValidationFailed
from config.permissions import StaffModelPermissions

NOTE_PARAMETERS = [
    OpenApiParameter(
        "entity_type",
        str,
        required=True,
        description="A registered model's name (lead, deal, task...).",
    ),
    OpenApiParameter("entity_id", str, required=True, description="The object's id."),
    OpenApiParameter("visibility", str, enum=NoteVisibility.values),
]


class NoteViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The notes of one object, newest first: ``?entity_type=lead&entity_id=5``. Anyone who
    may see the object (the model's visibility rule; staff see all) reads its notes; an
    object out of sight answers 404 like a missing one."""

    serializer_class = NoteSerializer
    filter_backends: list = []

    def _target(self) -> tuple[str, Any]:
        params = self.request.query_params
        entity_type, entity_id = params.get("entity_type", ""), params.get("entity_id", "")
        issues = []
        if not entity_type:
            issues.append(("entity_type", "required: the name of a registered model"))
        elif registration_for_name(entity_type) is None:
            known = ", ".join(sorted(r.name for r in registrations()))
            issues.append(("entity_type", f"unknown entity type {entity_type!r} (known: {known})"))
        if not entity_id:
            issues.append(("entity_id", "required: the object's id"))
        elif len(entity_id) > 64 or "\x00" in entity_id:
            issues.append(("entity_id", "an id of at most 64 characters"))
        visibility = params.get("visibility")
        if visibility and visibility not in NoteVisibility.values:
            issues.append(("visibility", f"must be one of {', '.join(NoteVisibility.values)}"))
        if issues:
            raise ValidationFailed.from_issues(issues)
        registration = registration_for_name(entity_type)
        assert registration is not None
        try:
            target = visible_rows(registration, self.request.user).filter(pk=entity_id).first()
        except (ValueError, TypeError, DjangoValidationError):
            target = None
        if target is None:
            raise NotFound(f"No {entity_type} {entity_id}.")
        return entity_type, target

    def get_queryset(self) -> QuerySet[Note]:
        if getattr(self, "swagger_fake_view", False):
            return Note.objects.none()
        _, target = self._target()
        queryset = Note.objects.filter(
            content_type=ContentType.objects.get_for_model(type(target)), object_id=str(target.pk)
        ).select_related("author", "action_run")
        visibility = self.request.query_params.get("visibility")
        if visibility:
            queryset = queryset.filter(visibility=visibility)
        return queryset.order_by("-created_at", "-id")

    def get_serializer_context(self) -> dict[str, Any]:
        return {
            **super().get_serializer_context(),
            "entity_type": self.request.query_params.get("entity_type", ""),
        }

    @extend_schema(parameters=NOTE_PARAMETERS)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Exports written by ``enqueue_export`` steps: status, progress, row count and, once
    written, the download link. Each user sees the exports made with their visibility;
    users with ``automation.view_export`` see all. Others' answer 404."""

    serializer_class = ExportSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Export]:
        queryset = Export.objects.select_related("action_run", "requested_by").order_by(
            "-created_at", "-id"
        )
        user = self.request.user
        if not user.is_authenticated:
            return queryset.none()
        if user.has_perm("automation.view_export"):
            return queryset
        return queryset.filter(requested_by=user)

    def get_object(self) -> Export:
        lookup = str(self.kwargs["pk"])
        found = (
            self.get_queryset().filter(pk=int(lookup)).first()
            if lookup.isascii() and lookup.isdigit() and len(lookup) <= 18
            else None
        )
        if found is None:
            raise NotFound(f"Export {lookup} not found.")
        return found

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The CSV."),
            409: OpenApiResponse(description="EXPORT_NOT_READY (with its status)."),
        }
    )
    @action(detail=True, methods=["get"], url_path="download", url_name="api-download")
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        """The CSV, once written; before that 409 EXPORT_NOT_READY with its ``status``."""
        export = self.get_object()
        if not (export.finished_at and export.file):
            raise Conflict(
                "The export is not written yet; see its status.",
                code="EXPORT_NOT_READY",
                data={"status": export_status(export)},
            )
        return FileResponse(
            export.file.open("rb"),
            as_attachment=True,
            filename=f"{export.entity_type}-export-{export.pk}.csv",
            content_type="text/csv",
        )


class SecretViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Stored secrets, by name (``/secrets/CRM_API_KEY/``): names and descriptions are
    listed to staff with ``view_secret``; creating, replacing and deleting need
    ``add_secret``, ``change_secret``, ``delete_secret``. A value is written, encrypted,
    and never returned by any endpoint. Deleting a stored secret leaves the environment's
    ``FLOWDESK_SECRET_<NAME>`` (if set) in force."""

    queryset = Secret.objects.order_by("name")
    serializer_class = SecretSerializer
    permission_classes = [StaffModelPermissions]
    filter_backends: list = []
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_object(self) -> Secret:
        name = self.kwargs["name"]
        found = (
            self.get_queryset().filter(name=name).first() if SECRET_NAME.fullmatch(name) else None
        )
        if found is None:
            raise NotFound(f"No stored secret {self.kwargs['name']!r}.")
        self.check_object_permissions(self.request, found)
        return found

    def perform_create(self, serializer: BaseSerializer[Secret]) -> None:
        data = serializer.validated_data
        if Secret.objects.filter(name=data["name"]).exists():
            raise ValidationFailed.from_issues(
                [("name", "a secret with this name exists; change it with PUT or PATCH")]
            )
        secret_set(name=data["name"], value=data["value"], description=data.get("description", ""))
        serializer.instance = Secret.objects.get(name=data["name"])

    def perform_update(self, serializer: BaseSerializer[Secret]) -> None:
        secret = serializer.instance
        assert secret is not None  # an update always has the object it updates
        data = serializer.validated_data
        if data.get("name", secret.name) != secret.name:
            raise ValidationFailed.from_issues(
                [("name", "a secret cannot be renamed (templates name it); create another")]
            )
        if "value" in data:
            secret_set(name=secret.name, value=data["value"], description=data.get("description"))
        elif "description" in data:
            secret_describe(name=secret.name, description=data["description"])
        elif not serializer.partial:
            raise ValidationFailed.from_issues([("value", "give the new value")])
        serializer.instance = Secret.objects.get(pk=secret.pk)

    def perform_destroy(self, instance: Secret) -> None:
        secret_delete(name=instance.name)
