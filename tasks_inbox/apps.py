from django.apps import AppConfig


class TasksInboxConfig(AppConfig):
    name = "tasks_inbox"
    verbose_name = "Tasks and inbox"

    def ready(self) -> None:
        from tasks_inbox import engine

        engine.register()
