"""Measurements, no Dagster: serial against parallel with repeats, the report and its verdict."""
