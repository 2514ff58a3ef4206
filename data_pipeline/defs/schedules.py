"""When numbers_job runs on its own every morning, for the day before (the Dagster daemon must
be running)."""

import datetime
import os

import dagster as dg

from data_pipeline.defs.jobs import numbers_job
from data_pipeline.defs.partitions import daily_partitions

# When the daily schedule ticks (UTC); the environment variable moves it (another hour, or
# every minute in a test of the daemon).
SCHEDULE_CRON_VARIABLE = "DATA_PIPELINE_SCHEDULE_CRON"
DAILY_CRON = "0 6 * * *"


@dg.schedule(
    job=numbers_job,
    cron_schedule=os.environ.get(SCHEDULE_CRON_VARIABLE) or DAILY_CRON,
    execution_timezone="UTC",
    description=(
        "Every day at 06:00 UTC (DATA_PIPELINE_SCHEDULE_CRON moves it), materialize the day "
        "before: its export is complete."
    ),
)
def numbers_daily_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    """The day before, unless it is not a day of the partitions (the start date's morning)
    or already materialized (its export landed and the sensor ran it, or a person did)."""
    day = (context.scheduled_execution_time - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    if not daily_partitions.has_partition_key(day):
        return dg.SkipReason(f"{day} is before the partitions' first day")
    done = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("transformed_numbers"), asset_partitions=[day]),
        limit=1,
    ).records
    if done:
        return dg.SkipReason(f"{day} is already materialized (run {done[0].run_id[:8]})")
    return dg.RunRequest(partition_key=day)
