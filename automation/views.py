"""Operations pages: the monitoring dashboard and the Prometheus endpoint."""

from __future__ import annotations

import hmac

import pygal
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pygal.style import CleanStyle

from automation import monitoring
from automation.metrics import EngineCollector
from automation.models import Export


def _chart(chart: pygal.Graph) -> str:
    return mark_safe(chart.render(is_unicode=True, disable_xml_declaration=True))  # noqa: S308


@staff_member_required
@require_GET
def monitoring_page(request: HttpRequest) -> HttpResponse:
    hours = min(max(int(request.GET.get("hours", "24") or 24), 1), 24 * 30)
    metrics = monitoring.workflow_metrics(hours=hours)
    per_hour = monitoring.throughput(hours=hours)
    config = {"style": CleanStyle, "height": 280, "width": 640, "explicit_size": True,
              "legend_at_bottom": True, "show_y_guides": True}

    throughput_chart = pygal.Line(title="Runs per hour", x_label_rotation=30, **config)
    throughput_chart.x_labels = [row["hour"].strftime("%d %H:00") for row in per_hour]
    throughput_chart.add("started", [row["started"] for row in per_hour])
    throughput_chart.add("failed", [row["failed"] for row in per_hour])

    durations = pygal.HorizontalBar(title="Run duration (s), p50 and p95", **config)
    durations.x_labels = [m["workflow"] for m in metrics]
    durations.add("p50", [m["duration_p50_seconds"] for m in metrics])
    durations.add("p95", [m["duration_p95_seconds"] for m in metrics])

    failures = pygal.HorizontalBar(title="Failure rate (%)", **config)
    failures.x_labels = [m["workflow"] for m in metrics]
    failures.add("failed", [round(m["failure_rate"] * 100, 2) for m in metrics])

    context = {
        "hours": hours, "metrics": metrics, "active_runs": monitoring.active_runs(limit=50),
        "bottlenecks": monitoring.bottlenecks(hours=hours),
        "outbox_lag": round(monitoring.outbox_lag_seconds(), 1),
        "outbox_failing": monitoring.outbox_failing(),
        "charts": [_chart(throughput_chart), _chart(durations), _chart(failures)],
        "sla_compliance": monitoring.sla_compliance(hours=hours),
    }
    return render(request, "automation/monitoring.html", context)


@login_required
@require_GET
def export_download(request: HttpRequest, pk: int) -> FileResponse:
    """An export's CSV, for the user whose visibility chose its rows, or staff."""
    export = Export.objects.filter(pk=pk).exclude(file="").first()
    if export is None or not (request.user.is_staff or export.requested_by_id == request.user.pk):
        raise Http404("No such export.")
    handle = export.file.open("rb")
    return FileResponse(handle, as_attachment=True,
                        filename=f"{export.entity_type}-export-{export.pk}.csv",
                        content_type="text/csv")


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. With ``METRICS_TOKEN`` set, a matching bearer token is needed."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given, token):
            return HttpResponse("metrics token required\n", status=401,
                                content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(EngineCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
