from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation runtime"

    def ready(self) -> None:
        from automation.actions import load_actions
        from automation.services.waits import on_waiting_step_ended
        from automation.signals import waiting_step_ended

        load_actions()
        _declare_configured_events()
        waiting_step_ended.connect(
            on_waiting_step_ended, dispatch_uid="automation.waiting_step_ended"
        )


def _declare_configured_events() -> None:
    """The event types named in ``FLOWDESK["EVENT_TYPES"]`` (``FLOWDESK_EVENT_TYPES``)."""
    from django.conf import settings

    from automation.catalogue import declare_event

    for event_type in settings.FLOWDESK.get("EVENT_TYPES") or ():
        declare_event(
            event_type,
            description="Declared in the FLOWDESK_EVENT_TYPES setting (a free-form payload).",
        )
