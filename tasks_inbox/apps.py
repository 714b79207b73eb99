from django.apps import AppConfig


class TasksInboxConfig(AppConfig):
    name = "tasks_inbox"
    verbose_name = "Tasks and inbox"

    def ready(self) -> None:
        """Plug tasks into the engine: the task model, the task step types, metrics and
        monitoring reports (``tasks_inbox.engine.register``)."""
        from tasks_inbox import engine, live

        engine.register()
        live.register()  # the audiences of the inbox's live updates
