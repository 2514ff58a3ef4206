"""Dagster only: the assets, checks, jobs, schedules and resources that definitions.py loads."""
