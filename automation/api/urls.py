"""API routes of the runtime app."""

from rest_framework.routers import BaseRouter

from automation.api.catalogue import EventTypeViewSet
from automation.api.monitoring import MonitoringViewSet
from automation.api.records import ExportViewSet, NoteViewSet, SecretViewSet
from automation.api.views import EventViewSet, RunViewSet


def register(router: BaseRouter) -> None:
    router.register("events", EventViewSet, basename="event")
    router.register("event-types", EventTypeViewSet, basename="event-type")
    router.register("runs", RunViewSet, basename="run")
    router.register("monitoring", MonitoringViewSet, basename="monitoring")
    router.register("notes", NoteViewSet, basename="note")
    router.register("exports", ExportViewSet, basename="export")
    router.register("secrets", SecretViewSet, basename="secret")
