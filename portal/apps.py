"""The web portal: companies book in a few clicks, operators run the facility from one screen.

Pages are thin: parse, call one service or selector (booking/, equipment/), render. Who may do
what is decided by booking/services/access.py, as for the API.
"""

from django.apps import AppConfig


class PortalConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "portal"
    verbose_name = "web portal"
