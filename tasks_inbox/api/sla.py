"""SLA API: ``sla-configs/`` (CRUD, staff with the model permissions) and
``monitoring/sla-compliance/`` (staff and queue managers, over the tasks they may see)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from config.errors import NotFound, PermissionDenied, ValidationFailed
from config.params import datetime_params
from config.permissions import StaffModelPermissions
from tasks_inbox.models import SLA_SPECIFICITY_RULE, Queue, SLAConfig
from tasks_inbox.selectors import (
    REFERENCE_RULE,
    queue_lookup,
    sla_compliance_daily,
    sla_compliance_report,
    user_lookup,
)
from tasks_inbox.sla.configs import sla_config_delete, sla_config_save
from tasks_inbox.sla.rules import SLAConfigInvalid, sla_config_document

MAX_HOURS = 24 * 366


class SLAConfigSerializer(serializers.Serializer):
    """An SLA config document (the read shape; writes send the same keys)."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False, default=True)
    queue = serializers.CharField(
        required=False, allow_null=True, help_text="A queue (group) id or name. " + REFERENCE_RULE
    )
    task_type = serializers.CharField(required=False, allow_blank=True, max_length=64)
    priority = serializers.ChoiceField(
        choices=["low", "medium", "high", "urgent"], required=False, allow_null=True
    )
    target = serializers.CharField(
        help_text='A duration: "1:30:00", "PT90M", "90m", "4h", "2d" or seconds.'
    )
    warning_after = serializers.CharField(
        required=False, allow_null=True, help_text="A duration less than the target."
    )
    escalation_ladder = serializers.JSONField(
        required=False,
        help_text='[{"after": "2h" | "after_percent": 150, "actions": '
        '[{"type": "remind" | "raise_priority" | "reassign" | '
        '"notify_manager", ...}]}], each level at or after the '
        "target, in order.",
    )
    start_state = serializers.CharField(
        required=False, allow_blank=True, help_text="Empty: the clock starts on creation."
    )
    pause_while_blocked = serializers.BooleanField(required=False, default=True)
    working_hours = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='{"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00", '
        '"time_zone": "Europe/Paris"}',
    )
    specificity = serializers.CharField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance: SLAConfig) -> dict[str, Any]:
        return sla_config_document(instance)


def resolve_references(document: dict[str, Any]) -> dict[str, Any]:
    """Users and queues named the API's way (a user by id, username or email, a queue by id
    or name; unknown or ambiguous: UNKNOWN_*/AMBIGUOUS_* naming the JSON path), handed on
    to the SLA rules as the username and the queue name. Everything else is left to them."""
    document = dict(document)
    if document.get("queue") not in (None, ""):
        document["queue"] = queue_lookup(document["queue"], field="queue").name
    ladder = document.get("escalation_ladder")
    if not isinstance(ladder, list):
        return document
    resolved = []
    for index, level in enumerate(ladder):
        actions = level.get("actions") if isinstance(level, dict) else None
        if isinstance(actions, list):
            level = {
                **level,
                "actions": [
                    _resolve_action(action, f"escalation_ladder[{index}].actions[{position}]")
                    for position, action in enumerate(actions)
                ],
            }
        resolved.append(level)
    document["escalation_ladder"] = resolved
    return document


def _resolve_action(action: Any, path: str) -> Any:
    if not isinstance(action, dict) or action.get("type") != "reassign":
        return action
    action = dict(action)
    if action.get("queue") not in (None, ""):
        action["queue"] = queue_lookup(action["queue"], field=f"{path}.queue").name
    if action.get("user") not in (None, ""):
        action["user"] = user_lookup(action["user"], field=f"{path}.user").get_username()
    return action


class SLAConfigViewSet(viewsets.ModelViewSet):
    __doc__ = (
        "SLA configs. A write is validated whole; errors name each JSON path "
        "(``escalation_ladder[1].after: must come after the previous level``). "
        + SLA_SPECIFICITY_RULE
        + " Editing a config recomputes its open tasks from "
        "their start with the new durations; what has fired stays fired."
    )

    queryset = SLAConfig.objects.select_related("queue").order_by("name")
    serializer_class = SLAConfigSerializer
    permission_classes = [StaffModelPermissions]
    filter_backends: list = []

    def get_object(self) -> SLAConfig:
        lookup = str(self.kwargs["pk"])
        by_id = lookup.isascii() and lookup.isdigit()
        found = self.get_queryset().filter(pk=int(lookup)).first() if by_id else None
        if found is None:
            raise NotFound(f"SLA config {lookup} not found.")
        self.check_object_permissions(self.request, found)
        return found

    def _document(self, request: Request, base: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise SLAConfigInvalid.from_issues([("", "an SLA config must be a JSON object")])
        document = {**(base or {}), **request.data}
        for key in ("id", "specificity", "updated_at"):
            document.pop(key, None)
        return resolve_references(document)

    @extend_schema(request=SLAConfigSerializer, responses={201: SLAConfigSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        config = sla_config_save(document=self._document(request, None))
        return Response(sla_config_document(config), status=status.HTTP_201_CREATED)

    @extend_schema(request=SLAConfigSerializer, responses=SLAConfigSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        config = self.get_object()
        base = sla_config_document(config) if kwargs.get("partial") else None
        config = sla_config_save(document=self._document(request, base), config=config)
        return Response(sla_config_document(config))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete a config no task uses; otherwise 409 SLA_CONFIG_IN_USE (deactivate it)."""
        sla_config_delete(config=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- compliance -------------------------------------------------------------------------


def may_see_compliance(user: Any) -> bool:
    """Staff and the managers of a queue."""
    if not (user and user.is_authenticated and user.is_active):
        return False
    return bool(user.is_staff or Queue.objects.filter(managers=user).exists())


def compliance_period(params: Any) -> tuple[datetime, datetime, int | None]:
    """``since``/``until`` (ISO datetimes) or ``hours`` back from now (default 24), and an
    optional ``config`` id."""
    moments, issues = datetime_params(params, ("since", "until"))
    until = moments.get("until") or timezone.now()
    since = moments.get("since")
    hours = params.get("hours")
    if since is None:
        try:
            hours_value = int(hours) if hours not in (None, "") else 24
        except (TypeError, ValueError):
            hours_value = 0
        if not 1 <= hours_value <= MAX_HOURS:
            issues.append(("hours", f"must be a whole number from 1 to {MAX_HOURS}"))
        else:
            since = until - timedelta(hours=hours_value)
    config = params.get("config")
    config_id = None
    if config not in (None, ""):
        if not str(config).isdigit() or len(str(config)) > 18:
            issues.append(("config", "must be an SLA config id"))
        else:
            config_id = int(config)
    if since is not None and since >= until and not issues:
        issues.append(("since", "must be before until"))
    if issues:
        raise ValidationFailed.from_issues(issues)
    assert since is not None
    return since, until, config_id


PERIOD = [
    OpenApiParameter("hours", int, description="Window ending now (default 24)."),
    OpenApiParameter("since", str, description="Start of the period (ISO 8601)."),
    OpenApiParameter("until", str, description="End of the period (default: now)."),
    OpenApiParameter("config", int, description="Only this SLA config."),
]


class SLAComplianceViewSet(viewsets.ViewSet):
    """SLA compliance per config over a period, and per day: the share of tasks completed
    within the target, the breaches, the mean and p95 clock time to complete. Staff see all
    tasks; a queue's managers the tasks they may see."""

    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[SLAConfig]:  # for the schema generator
        return SLAConfig.objects.none()

    @extend_schema(
        parameters=PERIOD, responses=OpenApiResponse(description="{since, until, configs, daily}")
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not may_see_compliance(request.user):
            raise PermissionDenied("SLA compliance is for staff and queue managers.")
        since, until, config_id = compliance_period(request.query_params)
        user = None if request.user.is_staff else request.user
        return Response(
            {
                "since": since,
                "until": until,
                "configs": sla_compliance_report(
                    since=since, until=until, user=user, config_id=config_id
                ),
                "daily": sla_compliance_daily(
                    since=since, until=until, user=user, config_id=config_id
                ),
            }
        )
