"""Bookings enforced on Slurm clusters: advance reservations kept in step with confirmed bookings."""
