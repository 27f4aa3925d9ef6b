from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EquipmentConfig(AppConfig):
    """The inventory: centres, equipment types and units, accelerator pools, nodes, devices."""

    name = "equipment"
    verbose_name = _("Equipment and accelerators")
