"""The Celery application. Workers: `celery -A testbed worker`; beat: `celery -A testbed beat`."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")

app = Celery("testbed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
@worker_process_init.connect
def _tune_garbage_collection(**_kwargs) -> None:
    """Start-up done (the worker, or a prefork child): freeze it out of the collector's walks."""
    from testbed import gctune

    gctune.tune()


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(**_kwargs) -> None:
    """Treat each task like a request: keep a healthy connection for CONN_MAX_AGE, drop broken ones.

    Celery's fixup would close every connection around every task (see CELERY_DB_REUSE_MAX).
    """
    from django.db import close_old_connections

    close_old_connections()


@app.task(name="testbed.ping", ignore_result=False)
def ping(token: str) -> str:
    """Answer a token back: lets health checks and tests prove a worker consumes tasks."""
    return f"pong:{token}"
