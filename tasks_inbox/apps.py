from django.apps import AppConfig


class TasksInboxConfig(AppConfig):
    name = "tasks_inbox"
    verbose_name = "Tasks and inbox"
