"""Task API: the caller's inbox and the operations on a task.

Every route starts from ``tasks_visible_to(request.user)``: a task outside it answers 404,
whatever the operation. Writes validate their input here and call one service.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.filters import FilterBackend
from config.parsers import Pagination
from config.requests import request_user
from tasks_inbox import services
from tasks_inbox.api.pagination import TaskCursorPagination
from tasks_inbox.api.serializers import (
    ClaimSerializer,
    CompleteSerializer,
    EscalateSerializer,
    HistorySerializer,
    ReassignSerializer,
    TaskActionsSerializer,
    TaskCreateSerializer,
    TaskDetailSerializer,
    TaskOutOfSightSerializer,
    TaskSerializer,
    TransitionSerializer,
    task_actions,
)
from tasks_inbox.filters import TaskFilter
from tasks_inbox.models import Task
from tasks_inbox.selectors import (
    LIST_RELATED,
    task_get,
    task_history,
    task_stats,
    tasks_visible_to,
)

# A reassign or escalate answers the task, or what happened when it left the caller's sight.
HANDOVER_RESPONSE = PolymorphicProxySerializer(
    component_name="TaskHandover",
    serializers=[TaskDetailSerializer, TaskOutOfSightSerializer],
    resource_type_field_name=None,
)


class TaskViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Tasks the caller may see (assigned to them, unassigned in their queues, every task of
    the queues they manage; staff see all). Filters: ``state``, ``priority``, ``task_type``,
    ``queue`` (id or name), ``assignee`` (``me``, ``none``, id, username or email),
    ``overdue``, ``open``; a value that names nothing answers 400;
    ``sort``: ``priority`` (default), ``due``, ``created`` (``-`` reverses). Pages by
    cursor: follow ``next`` / ``previous``; a garbled cursor answers 400 INVALID_CURSOR."""

    serializer_class = TaskSerializer
    pagination_class = TaskCursorPagination
    filter_backends = [FilterBackend]
    filterset_class = TaskFilter

    def get_queryset(self) -> QuerySet[Task]:
        return tasks_visible_to(self.request.user).select_related(*LIST_RELATED)

    # The input of each write, so the browsable API and the schema show its own form.
    action_serializers: dict[str, type] = {
        "create": TaskCreateSerializer,
        "transition": TransitionSerializer,
        "claim": ClaimSerializer,
        "complete": CompleteSerializer,
        "reassign": ReassignSerializer,
        "escalate": EscalateSerializer,
        "retrieve": TaskDetailSerializer,
    }

    def get_serializer_class(self) -> type:
        return self.action_serializers.get(self.action or "", TaskSerializer)

    def get_object(self) -> Task:
        return task_get(user=self.request.user, task_id=self.kwargs["pk"])

    def _after_handover(self, task_id: Any, done: str) -> Response:
        """The answer to a committed reassign or escalate: the task while the caller still
        sees it, else what happened (``visible: false``); never an error after the fact."""
        task = tasks_visible_to(self.request.user).filter(pk=task_id).first()
        if task is None:
            return Response({"id": int(task_id), done: True, "visible": False})
        return self._detail(task_id)

    def _detail(self, task_id: Any) -> Response:
        task = task_get(user=self.request.user, task_id=task_id)
        return Response(TaskDetailSerializer(task, context={"request": self.request}).data)

    @extend_schema(request=TaskCreateSerializer, responses={201: TaskDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a task by hand. Staff may assign anyone; others may create tasks for
        themselves or in their own queues."""
        serializer = TaskCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = request_user(request)
        task = services.task_create_by_hand(
            actor=user,
            title=data["title"],
            description=data["description"],
            task_type=data["task_type"],
            assignee=data.get("assignee"),
            queue=data.get("queue"),
            routing=data.get("routing"),
            priority=data["priority"],
            due_at=data.get("due_at"),
            lifecycle=data.get("lifecycle"),
            form=data.get("form") or None,
            parent=data.get("parent"),
        )
        return Response(
            TaskDetailSerializer(
                task_get(user=user, task_id=task.pk), context={"request": request}
            ).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(responses=TaskActionsSerializer)
    @action(detail=True, methods=["get"], url_path="available-actions")
    def available_actions(self, request: Request, pk: str | None = None) -> Response:
        """The current state, the lifecycle actions the caller may take now, the disabled
        ones out of this state (as unavailable), and whether they can claim. The task's
        detail carries the same."""
        return Response(task_actions(self.get_object(), request.user))

    @extend_schema(request=TransitionSerializer, responses=TaskDetailSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        """Fire a lifecycle action. Not allowed from the current state: 400
        INVALID_TRANSITION with ``current_state`` and ``allowed_actions``; a disabled
        action: 400 ACTION_DISABLED with the same data."""
        self.get_object()  # out of sight: 404 before anything else
        serializer = TransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = services.task_transition(
            task_id=pk,
            action=data["action"],
            actor=request_user(request),
            input=data.get("input"),
            outcome=data.get("outcome") or None,
        )
        return self._detail(task.pk)

    @extend_schema(
        request=ClaimSerializer,
        responses={200: TaskDetailSerializer, 409: OpenApiResponse(description="Already claimed.")},
    )
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, pk: str | None = None) -> Response:
        """Take an unassigned task of one of your queues; 409 CONFLICT if someone was first."""
        task = services.task_claim(task_id=pk, actor=request_user(request))
        return self._detail(task.pk)

    @extend_schema(request=CompleteSerializer, responses=TaskDetailSerializer)
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        """Submit the form (``data``) and complete the task; invalid data answers
        VALIDATION_ERROR with a message per field (``data.<field>``)."""
        self.get_object()  # out of sight: 404 before anything else
        serializer = CompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_complete(
            task_id=pk,
            actor=request_user(request),
            data=serializer.validated_data.get("data"),
            outcome=serializer.validated_data.get("outcome") or None,
        )
        return self._detail(task.pk)

    @extend_schema(request=ReassignSerializer, responses=HANDOVER_RESPONSE)
    @action(detail=True, methods=["post"])
    def reassign(self, request: Request, pk: str | None = None) -> Response:
        """Give the task to another user or queue. The answer is the task, or, when the
        caller no longer sees it, ``{"id", "reassigned": true, "visible": false}``."""
        self.get_object()  # out of sight: 404 before anything else
        serializer = ReassignSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = services.task_reassign(
            task_id=pk,
            actor=request_user(request),
            assignee=data.get("assignee"),
            queue=data.get("queue"),
            reason=data.get("reason", ""),
        )
        return self._after_handover(task.pk, "reassigned")

    @extend_schema(request=EscalateSerializer, responses=HANDOVER_RESPONSE)
    @action(detail=True, methods=["post"])
    def escalate(self, request: Request, pk: str | None = None) -> Response:
        """Raise the priority and/or hand the task on. The answer is the task, or, when the
        caller no longer sees it, ``{"id", "escalated": true, "visible": false}``."""
        self.get_object()  # out of sight: 404 before anything else
        serializer = EscalateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = services.task_escalate(
            task_id=pk,
            actor=request_user(request),
            reason=data.get("reason", ""),
            priority=data.get("priority"),
            assignee=data.get("assignee"),
            queue=data.get("queue"),
        )
        return self._after_handover(task.pk, "escalated")

    @extend_schema(responses=HistorySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=Pagination)
    def history(self, request: Request, pk: str | None = None) -> Response:
        """Every step of the task: actor, time, from, to, input."""
        rows = task_history(self.get_object())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(HistorySerializer(page, many=True).data)

    @extend_schema(responses={200: OpenApiResponse(description="Counts.")})
    @action(detail=False, methods=["get"])
    def stats(self, request: Request) -> Response:
        """Counts over the tasks the caller sees."""
        return Response(task_stats(user=request.user))
