from django.db import models
from django.utils.translation import gettext_lazy as _


class Channel(models.TextChoices):
    """Where a state change came from, recorded on every audit entry."""

    WEB = "web", _("web")
    API = "api", _("API")
    ADMIN = "admin", _("admin")
    SYSTEM = "system", _("system")
