from django.apps import AppConfig


class SeedsConfig(AppConfig):
    """The facility catalogue as data files, and `manage.py load_seeds`."""

    name = "seeds"
    verbose_name = "Seed catalogue"
