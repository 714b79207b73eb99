from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation runtime"

    def ready(self) -> None:
        from automation.actions import load_actions
        from automation.services.waits import on_waiting_step_ended
        from automation.signals import waiting_step_ended

        load_actions()
        waiting_step_ended.connect(
            on_waiting_step_ended, dispatch_uid="automation.waiting_step_ended"
        )
