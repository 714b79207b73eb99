"""API routes of the authoring app."""

from rest_framework.routers import BaseRouter

from workflows.api.step_types import StepTypeViewSet
from workflows.api.views import ActionViewSet, TriggerViewSet, WorkflowViewSet


def register(router: BaseRouter) -> None:
    router.register("workflows", WorkflowViewSet, basename="workflow")
    router.register("triggers", TriggerViewSet, basename="trigger")
    router.register("actions", ActionViewSet, basename="action")
    router.register("step-types", StepTypeViewSet, basename="step-type")
