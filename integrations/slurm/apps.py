"""App configuration of integrations.slurm."""

from django.apps import AppConfig


class SlurmConfig(AppConfig):
    name = "integrations.slurm"
    label = "slurm"
    default_auto_field = "django.db.models.BigAutoField"
