from django.db import models
from django.utils.translation import gettext_lazy as _


class Channel(models.TextChoices):
    """Where a state change came from, recorded on every audit entry."""

    WEB = "web", _("web")
    API = "api", _("API")
    ADMIN = "admin", _("admin")
    SYSTEM = "system", _("system")


class KeyScope(models.TextChoices):
    """What an organisation API key may do. A key acts as its organisation, never as a person."""

    CATALOG_READ = "catalog:read", _("read the catalogue and availability")
    BOOKINGS_READ = "bookings:read", _("read the organisation's bookings and rounds")
    BOOKINGS_WRITE = "bookings:write", _("make bookings and change the ones the key made")
    USAGE_READ = "usage:read", _("read quota grants, ledgers and usage reports")
    MEMBERS_MANAGE = "members:manage", _("list members and invite people")
    WEBHOOKS_MANAGE = "webhooks:manage", _("manage webhook endpoints and read their delivery log")


# Scope names of the first API version, still accepted when a key is made (expanded at once).
LEGACY_KEY_SCOPES: dict[str, tuple[str, ...]] = {
    "read": (KeyScope.CATALOG_READ, KeyScope.BOOKINGS_READ, KeyScope.USAGE_READ),
    "book": (KeyScope.CATALOG_READ, KeyScope.BOOKINGS_WRITE),
}
