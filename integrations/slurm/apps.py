"""App configuration of integrations.slurm: connects the receivers of domain events."""

from django.apps import AppConfig


class SlurmConfig(AppConfig):
    name = "integrations.slurm"
    label = "slurm"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Slurm"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from booking.events import event_published
        from integrations.slurm import receivers
        from integrations.slurm.models import SlurmCluster

        event_published.connect(receivers.on_event_published, dispatch_uid="slurm-sync")
        post_save.connect(
            receivers.on_cluster_changed, sender=SlurmCluster, dispatch_uid="slurm-index-save"
        )
        post_delete.connect(
            receivers.on_cluster_changed, sender=SlurmCluster, dispatch_uid="slurm-index-delete"
        )
        from testbed import readcache

        readcache.watch(SlurmCluster)
