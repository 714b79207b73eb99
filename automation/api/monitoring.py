"""Monitoring API: active runs, per-workflow metrics, bottlenecks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from automation import monitoring
from config.permissions import CanViewMonitoring

HOURS = OpenApiParameter("hours", int, description="Window in hours (default 24, max 720).")


def _hours(request: Request) -> int:
    try:
        return min(max(int(request.query_params.get("hours", 24)), 1), 720)
    except ValueError:
        from config.errors import ValidationFailed

        raise ValidationFailed.from_issues([("hours", "must be an integer")]) from None


class MonitoringViewSet(viewsets.ViewSet):
    """Operations figures, computed in the database, for holders of
    ``automation.view_monitoring``."""

    permission_classes = [CanViewMonitoring]

    @extend_schema(responses=OpenApiResponse(description="Open runs, oldest first."))
    @action(detail=False, methods=["get"], url_path="active-runs")
    def active_runs(self, request: Request) -> Response:
        return Response({"results": monitoring.active_runs(limit=200)})

    @extend_schema(
        parameters=[HOURS], responses=OpenApiResponse(description="Per-workflow metrics.")
    )
    @action(detail=False, methods=["get"])
    def metrics(self, request: Request) -> Response:
        hours = _hours(request)
        return Response(
            {
                "hours": hours,
                "workflows": monitoring.workflow_metrics(hours=hours),
                "throughput": monitoring.throughput(hours=hours),
                "outbox_lag_seconds": monitoring.outbox_lag_seconds(),
                "outbox_failing": monitoring.outbox_failing(),
            }
        )

    @extend_schema(
        parameters=[HOURS], responses=OpenApiResponse(description="Slowest/failing steps, queues.")
    )
    @action(detail=False, methods=["get"])
    def bottlenecks(self, request: Request) -> Response:
        return Response(monitoring.bottlenecks(hours=_hours(request)))

    @extend_schema(responses=OpenApiResponse(description="Links to the monitoring endpoints."))
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        base = request.build_absolute_uri()
        return Response(
            {
                name: f"{base}{name}/"
                for name in ("active-runs", "metrics", "bottlenecks", "sla-compliance")
            }
        )
