"""App configuration of integrations.webhooks: hears every published domain event."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WebhooksConfig(AppConfig):
    name = "integrations.webhooks"
    label = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = _("웹훅")

    def ready(self) -> None:
        from booking.events import event_published
        from integrations.webhooks.delivery import on_event_published

        event_published.connect(
            on_event_published, dispatch_uid="integrations.webhooks.on_event_published"
        )
        from integrations.webhooks.models import WebhookEndpoint
        from testbed import readcache

        readcache.watch(WebhookEndpoint)
