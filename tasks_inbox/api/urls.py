"""API routes of this app."""

from rest_framework.routers import BaseRouter

from tasks_inbox.api.lifecycles import LifecycleViewSet
from tasks_inbox.api.notifications import NotificationViewSet
from tasks_inbox.api.queues import QueueViewSet
from tasks_inbox.api.sla import SLAComplianceViewSet, SLAConfigViewSet
from tasks_inbox.api.views import TaskViewSet


def register(router: BaseRouter) -> None:
    """Add this app's viewsets to the API router."""
    router.register("tasks", TaskViewSet, basename="task")
    router.register("queues", QueueViewSet, basename="queue")
    router.register("notifications", NotificationViewSet, basename="notification")
    router.register("lifecycles", LifecycleViewSet, basename="lifecycle")
    router.register("sla-configs", SLAConfigViewSet, basename="sla-config")
    router.register("monitoring/sla-compliance", SLAComplianceViewSet, basename="sla-compliance")
