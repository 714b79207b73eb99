"""Inbox pages."""

from django.urls import path

from tasks_inbox import views

app_name = "inbox"
urlpatterns = [
    path("inbox/", views.my_tasks, name="my-tasks"),
    path("inbox/queues/", views.my_queues, name="queues"),
    path("inbox/team/", views.team, name="team"),
    path("inbox/tasks/<int:pk>/", views.task_detail, name="task"),
    path("inbox/tasks/<int:pk>/claim/", views.task_claim, name="claim"),
    path("inbox/tasks/<int:pk>/transition/", views.task_transition, name="transition"),
    path("inbox/tasks/<int:pk>/complete/", views.task_complete, name="complete"),
    path("inbox/tasks/<int:pk>/notes/", views.task_note, name="note"),
    path("inbox/notifications/", views.notifications, name="notifications"),
    path("inbox/notifications/read/", views.notification_read, name="notifications-read"),
    path("inbox/notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
    path("inbox/sla/", views.sla_compliance, name="sla-compliance"),
]
