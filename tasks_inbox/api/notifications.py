"""Notification API: the caller's own notifications, the unread count, marking read."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.errors import NotFound, ValidationFailed
from config.requests import request_user
from tasks_inbox import services
from tasks_inbox.api.serializers import (
    MarkedReadSerializer,
    NotificationReadSerializer,
    NotificationSerializer,
    UnreadCountSerializer,
)
from tasks_inbox.models import Notification
from tasks_inbox.selectors import notification_unread_count, notifications_for

UNREAD = OpenApiParameter("unread", bool, description="Only the unread ones (true/false).")


class NotificationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The caller's notifications, newest first; nobody sees another's (404)."""

    serializer_class = NotificationSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Notification]:
        user = self.request.user
        if not user.is_authenticated:
            return Notification.objects.none()
        unread_only = False
        if self.action == "list":
            unread = self.request.query_params.get("unread")
            if unread not in (None, "", "true", "false", "1", "0"):
                raise ValidationFailed.from_issues([("unread", "must be true or false")])
            unread_only = unread in ("true", "1")
        return notifications_for(user=user, unread_only=unread_only)

    def get_serializer_class(self) -> type:
        if self.action in ("read", "read_all"):
            return NotificationReadSerializer
        return NotificationSerializer

    def get_object(self) -> Notification:
        lookup = str(self.kwargs["pk"])
        found = (
            self.get_queryset().filter(pk=int(lookup)).first()
            if lookup.isascii() and lookup.isdigit() and len(lookup) <= 18
            else None
        )
        if found is None:
            raise NotFound(f"Notification {lookup} not found.")
        return found

    @extend_schema(parameters=[UNREAD])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=UnreadCountSerializer)
    @action(detail=False, methods=["get"], url_path="unread-count")
    def unread_count(self, request: Request) -> Response:
        return Response({"unread": notification_unread_count(user=request_user(request))})

    @extend_schema(request=NotificationReadSerializer, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request: Request, pk: str | None = None) -> Response:
        """Mark this notification read (marking it again changes nothing)."""
        notification = self.get_object()
        services.notification_mark_read(user=request_user(request), notification_id=notification.pk)
        notification.refresh_from_db(fields=["read_at"])
        return Response(NotificationSerializer(notification).data)

    @extend_schema(request=NotificationReadSerializer, responses=MarkedReadSerializer)
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request: Request) -> Response:
        """Mark every unread notification of the caller read."""
        marked = services.notification_mark_read(user=request_user(request))
        return Response(
            {"marked": marked, "unread": notification_unread_count(user=request_user(request))}
        )
