"""Signed webhooks (Standard Webhooks): organisations' endpoints, delivery by Celery, the delivery log."""
