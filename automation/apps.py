from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation runtime"

    def ready(self) -> None:
        from automation.actions import load_actions

        load_actions()
