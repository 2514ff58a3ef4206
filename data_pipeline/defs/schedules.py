"""When numbers_job runs on its own (the Dagster daemon must be running)."""

import dagster as dg

from data_pipeline.defs.jobs import numbers_job

numbers_daily_schedule = dg.ScheduleDefinition(
    name="numbers_daily_schedule",
    job=numbers_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    description="Materialize the numbers assets every day at 06:00 UTC, with default config.",
)
