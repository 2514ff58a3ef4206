"""Dagster only: the assets, checks, jobs, schedules, sensors and resources that definitions.py
loads."""
