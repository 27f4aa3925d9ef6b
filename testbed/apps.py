from django.apps import AppConfig


class TestbedConfig(AppConfig):
    """Cross-cutting pieces: the audit log, API error format, locking helpers."""

    name = "testbed"
    verbose_name = "Testbed core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from testbed.readcache import connect_signals

        connect_signals()
