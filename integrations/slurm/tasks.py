"""Celery entry points of the Slurm sync: fetch by id, call the reconciler. Safe to run twice."""

from __future__ import annotations

from celery import shared_task

from integrations.slurm.scontrol import SlurmUnavailable
from integrations.slurm.services import cluster_reconcile, clusters_enabled

# Retries when the controller is unreachable: 15 s, 30 s, 1 min, ... capped at 10 min; then the
# beat's periodic reconcile keeps trying, so nothing is lost while Slurm is away.
MAX_RETRIES = 8


@shared_task(bind=True, name="slurm.reconcile_cluster", acks_late=True, max_retries=MAX_RETRIES)
def reconcile_cluster(self, cluster_id: int) -> str:
    try:
        return cluster_reconcile(cluster_id=cluster_id).summary()
    except SlurmUnavailable as exc:
        countdown = min(600, 15 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task(name="slurm.reconcile_all")
def reconcile_all() -> int:
    """Beat: queue a sync of every enabled cluster (each one its own task, own retries)."""
    ids = clusters_enabled()
    for cluster_id in ids:
        reconcile_cluster.delay(cluster_id)
    return len(ids)
