"""The versioned API: one router for every app's viewsets."""

from rest_framework.routers import DefaultRouter

from automation.api.urls import register as register_automation
from tasks_inbox.api.urls import register as register_tasks
from workflows.api.urls import register as register_workflows

router = DefaultRouter()
register_workflows(router)
register_automation(router)
register_tasks(router)

urlpatterns = router.urls
