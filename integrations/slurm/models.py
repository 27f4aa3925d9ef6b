"""Models of integrations.slurm."""
