"""Queue API: the queues the caller works in or manages (staff: all), with their counts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from config.errors import NotFound
from tasks_inbox.api.serializers import QueueSerializer
from tasks_inbox.models import Queue
from tasks_inbox.selectors import REFERENCE_RULE, queue_lookup, queues_of


class QueueViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Queues (groups) the caller is a member or a manager of; staff see every queue. Each
    has its open, claimable (open and unassigned) and overdue task counts. A queue is
    addressed by id or name (``/queues/Desk/``)."""

    serializer_class = QueueSerializer
    filter_backends: list = []
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Group]:
        return queues_of(self.request.user)

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        user = self.request.user
        if user.is_authenticated:
            context["member_ids"] = set(user.groups.values_list("pk", flat=True))
            context["managed_ids"] = set(
                Queue.objects.filter(managers=user).values_list("group_id", flat=True)
            )
        return context

    def get_object(self) -> Group:
        group = queue_lookup(self.kwargs["pk"], field="queue")
        found = self.get_queryset().filter(pk=group.pk).first()
        if found is None:  # a queue the caller is not in looks the same as a missing one
            raise NotFound(f"Queue {self.kwargs['pk']} not found.")
        return found

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "id",
                str,
                OpenApiParameter.PATH,
                description="A queue id or name. " + REFERENCE_RULE,
            )
        ]
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(self.get_object()).data)
