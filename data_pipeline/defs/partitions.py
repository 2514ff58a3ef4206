"""Days: the numbers assets are partitioned by UTC day, each day with its own files."""

import datetime
import os

import dagster as dg

START_DATE_VARIABLE = "DATA_PIPELINE_START_DATE"
DEFAULT_START_DATE = "2026-01-01"
# The tag Dagster puts on a run of one partition.
PARTITION_TAG = "dagster/partition"


def start_date(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """The first day (``DATA_PIPELINE_START_DATE``, YYYY-MM-DD); a bad value names itself."""
    text = environ.get(START_DATE_VARIABLE, "").strip() or DEFAULT_START_DATE
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{START_DATE_VARIABLE}={text!r}: expected a date as YYYY-MM-DD, e.g. 2026-01-01"
        ) from None
    return text


# end_offset=1: today's partition exists from 00:00 UTC, so a day's export can be processed
# (and the quick start run) on the day it arrives; the schedule runs the day before.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=start_date(), timezone="UTC", end_offset=1
)


def seed_of(day: str) -> int:
    """The seed of a day's generated file: its date as a number (2026-11-25: 20261125)."""
    return int(day.replace("-", ""))


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
