"""Prometheus metrics at ``/metrics``, read from the database at scrape time.

The state lives in our tables, so a scrape of any one web process sees the whole system
(every worker's work), with no multiprocess registry to keep in sync.

Apps built on the engine add their own families with :func:`register_metrics` (called from
their ``AppConfig.ready()``); the engine knows nothing of their tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, F
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from automation.models import ActionRun, Event, Run
from automation.monitoring import outbox_failing, outbox_lag_seconds

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HISTOGRAM_WINDOW_HOURS = 1

# name -> a function yielding Prometheus metric families, read at scrape time.
MetricsSource = Callable[[], Iterable[Any]]
_sources: dict[str, MetricsSource] = {}


def register_metrics(name: str, source: MetricsSource) -> None:
    """Add ``source``'s families to every scrape (registering a name again replaces it)."""
    _sources[name] = source


class EngineCollector(Collector):
    def collect(self) -> Iterator[Any]:
        events = CounterMetricFamily(
            "flowdesk_events", "Events stored, by source.", labels=["source"]
        )
        for row in Event.objects.values("source").annotate(n=Count("id")):
            events.add_metric([row["source"]], row["n"])
        yield events

        lag = GaugeMetricFamily(
            "flowdesk_outbox_lag_seconds",
            "Age of the oldest event not yet dispatched (0 when none).",
        )
        lag.add_metric([], outbox_lag_seconds())
        yield lag
        pending = GaugeMetricFamily("flowdesk_outbox_pending", "Events not yet dispatched.")
        pending.add_metric([], Event.objects.filter(dispatched_at__isnull=True).count())
        yield pending
        failing = GaugeMetricFamily(
            "flowdesk_outbox_failing",
            "Events whose dispatch failed, put off with backoff until their next attempt.",
        )
        failing.add_metric([], outbox_failing())
        yield failing

        runs = GaugeMetricFamily(
            "flowdesk_runs", "Runs by workflow and status.", labels=["workflow", "status"]
        )
        for row in Run.objects.values("workflow__slug", "status").annotate(n=Count("id")):
            runs.add_metric([row["workflow__slug"], row["status"]], row["n"])
        yield runs

        steps = GaugeMetricFamily(
            "flowdesk_action_runs", "Step runs by type and status.", labels=["type", "status"]
        )
        for row in ActionRun.objects.values("type", "status").annotate(n=Count("id")):
            steps.add_metric([row["type"], row["status"]], row["n"])
        yield steps

        yield self._durations()
        for source in _sources.values():
            yield from source()

    def _durations(self) -> HistogramMetricFamily:
        since = timezone.now() - timedelta(hours=HISTOGRAM_WINDOW_HOURS)
        histogram = HistogramMetricFamily(
            "flowdesk_step_duration_seconds",
            f"Durations of steps finished in the last {HISTOGRAM_WINDOW_HOURS}h, by type.",
            labels=["type"],
        )
        per_type: dict[str, list[float]] = {}
        rows = (
            ActionRun.objects.filter(finished_at__gte=since, started_at__isnull=False)
            .annotate(d=F("finished_at") - F("started_at"))
            .values_list("type", "d")
        )
        for step_type, duration in rows.iterator(chunk_size=2000):
            per_type.setdefault(step_type, []).append(duration.total_seconds())
        for step_type, values in per_type.items():
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            histogram.add_metric([step_type], buckets, sum_value=sum(values))
        return histogram
