"""API routes of the runtime app."""

from rest_framework.routers import BaseRouter

from automation.api.monitoring import MonitoringViewSet
from automation.api.views import EventViewSet, RunViewSet


def register(router: BaseRouter) -> None:
    router.register("events", EventViewSet, basename="event")
    router.register("runs", RunViewSet, basename="run")
    router.register("monitoring", MonitoringViewSet, basename="monitoring")
