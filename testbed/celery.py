"""The Celery application. Workers: `celery -A testbed worker`; beat: `celery -A testbed beat`."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")

app = Celery("testbed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="testbed.ping", ignore_result=False)
def ping(token: str) -> str:
    """Answer a token back: lets health checks and tests prove a worker consumes tasks."""
    return f"pong:{token}"
