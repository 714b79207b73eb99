from django.apps import AppConfig


class CrmConfig(AppConfig):
    """A small sample domain (leads and deals) registered with the engine for demos and tests.

    The engine does not depend on it; it shows what host code writes.
    """

    name = "crm"
    verbose_name = "CRM (sample domain)"

    def ready(self) -> None:
        from crm import engine

        engine.register()
