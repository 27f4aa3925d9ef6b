"""testbed: scheduler and booking system for Korea's shared AI infrastructure."""

from testbed.celery import app as celery_app

__all__ = ["celery_app"]
