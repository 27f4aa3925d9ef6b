"""API routes of integrations.slurm (included under /api/v1/)."""

urlpatterns: list = []
