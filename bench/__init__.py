"""Benchmarks and drills: `make bench`. Never part of the test run."""
