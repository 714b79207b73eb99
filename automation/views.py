"""Operations pages: the monitoring dashboard and the Prometheus endpoint."""

from __future__ import annotations

import hmac

import pygal
from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from automation import monitoring, operations
from automation.metrics import EngineCollector
from automation.models import Export
from config.charts import chart, chart_svg
from config.permissions import MONITORING_PERMISSION


def window_hours(value: str | None, default: int = 24) -> int:
    """The page's ``?hours=`` window: 1 to 720; anything that is not a whole number of
    hours falls back to the default."""
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        return default
    return min(max(int(text), 1), 24 * 30)


@login_required
@permission_required(MONITORING_PERMISSION, raise_exception=True)
@require_GET
def monitoring_page(request: HttpRequest) -> HttpResponse:
    hours = window_hours(request.GET.get("hours"))
    metrics = monitoring.workflow_metrics(hours=hours)
    per_hour = monitoring.throughput(hours=hours)
    throughput_chart = chart(pygal.Line, "Runs per hour", x_label_rotation=30)
    throughput_chart.x_labels = [row["hour"].strftime("%d %H:00") for row in per_hour]
    throughput_chart.add("started", [row["started"] for row in per_hour])
    throughput_chart.add("failed", [row["failed"] for row in per_hour])

    durations = chart(pygal.HorizontalBar, "Run duration (s), p50 and p95")
    durations.x_labels = [m["workflow"] for m in metrics]
    durations.add("p50", [m["duration_p50_seconds"] for m in metrics])
    durations.add("p95", [m["duration_p95_seconds"] for m in metrics])

    failures = chart(pygal.HorizontalBar, "Failure rate (%)")
    failures.x_labels = [m["workflow"] for m in metrics]
    failures.add("failed", [round(m["failure_rate"] * 100, 2) for m in metrics])

    active_runs = operations.active_runs_health(limit=50)
    context = {
        "hours": hours,
        "window_seconds": hours * 3600,
        "metrics": metrics,
        "active_runs": active_runs,
        "indicators": operations.indicator_counts(active_runs),
        "queue_dashboard": monitoring.queue_dashboard(hours=hours),
        "bottlenecks": monitoring.bottlenecks(hours=hours),
        "outbox_lag": round(monitoring.outbox_lag_seconds(), 1),
        "outbox_failing": monitoring.outbox_failing(),
        "charts": [chart_svg(throughput_chart), chart_svg(durations), chart_svg(failures)],
        "sla_compliance": monitoring.sla_compliance(hours=hours),
    }
    return render(request, "automation/monitoring.html", context)


@login_required
@require_GET
def export_download(request: HttpRequest, pk: int) -> FileResponse:
    """An export's CSV, for the user whose visibility chose its rows, or a holder of
    ``automation.view_export`` (as the API's ``exports/{id}/download/``)."""
    export = Export.objects.filter(pk=pk).exclude(file="").first()
    if export is None or not (
        export.requested_by_id == request.user.pk or request.user.has_perm("automation.view_export")
    ):
        raise Http404("No such export.")
    handle = export.file.open("rb")
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"{export.entity_type}-export-{export.pk}.csv",
        content_type="text/csv",
    )


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, behind ``Authorization: Bearer <METRICS_TOKEN>``.

    With no ``METRICS_TOKEN`` the endpoint is open only while ``DEBUG`` is on; otherwise it
    answers 403 saying the token must be set. A wrong or missing token answers 401.
    """
    token = settings.METRICS_TOKEN
    if not token:
        if not settings.DEBUG:
            return HttpResponse(
                "metrics are disabled: set METRICS_TOKEN to enable /metrics\n",
                status=403,
                content_type="text/plain",
            )
    else:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
        ):
            return HttpResponse("metrics token required\n", status=401, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(EngineCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
