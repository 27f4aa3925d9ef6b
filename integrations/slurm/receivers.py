"""Receivers: a domain event about a Slurm-backed pool queues a sync of that pool's cluster.

Cheap by design (booking/events.py): the lookup of Slurm-backed pools is cached, events about
other resources cost no query, and the work itself runs in a Celery task.
"""

from __future__ import annotations

from integrations.slurm.services import (
    clusters_for_event,
    clusters_mark_pending,
    slurm_index_forget,
)


def on_event_published(sender, event, **kwargs) -> None:
    cluster_ids = clusters_for_event(event)
    if not cluster_ids:
        return
    from integrations.slurm.tasks import reconcile_cluster

    clusters_mark_pending(cluster_ids)
    for cluster_id in cluster_ids:
        reconcile_cluster.delay(cluster_id)


def on_cluster_changed(sender, instance, **kwargs) -> None:
    """A cluster added, edited or removed: forget the cached index (after commit)."""
    from django.db import transaction

    transaction.on_commit(slurm_index_forget, robust=True)
