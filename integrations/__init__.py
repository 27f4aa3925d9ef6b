"""Connections to the systems around the product: signed webhooks, calendar feeds, Slurm reservations."""
