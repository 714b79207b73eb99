"""API routes of the authoring app."""

from rest_framework.routers import BaseRouter

from workflows.api.views import ActionViewSet, TriggerViewSet, WorkflowViewSet


def register(router: BaseRouter) -> None:
    router.register("workflows", WorkflowViewSet, basename="workflow")
    router.register("triggers", TriggerViewSet, basename="trigger")
    router.register("actions", ActionViewSet, basename="action")
