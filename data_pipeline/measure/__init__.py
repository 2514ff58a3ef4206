"""Measurements, no Dagster: timing, serial against parallel, the report (strategies/, sweeps/)."""
