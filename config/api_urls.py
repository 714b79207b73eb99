"""The versioned API: one router for every app's viewsets."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from automation.api.urls import register as register_automation
from config.api import TokenView
from tasks_inbox.api.urls import register as register_tasks
from workflows.api.urls import register as register_workflows

router = DefaultRouter()
register_workflows(router)
register_automation(router)
register_tasks(router)

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    *router.urls,
]
