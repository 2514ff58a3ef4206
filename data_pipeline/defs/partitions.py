"""Days: the numbers assets are partitioned by UTC day, each day with its own files."""

import datetime
import os
import warnings

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

# A backfill of the day's set writers runs up to 30 days in one run (each step once for all
# of them: one step process, one kernel start, one pool), not one run per day. Runs of 30
# rather than one run for any range: a failure redoes at most a month, a year's backfill is
# 13 runs that the run queue can interleave with daily runs, and a run's writer locks and
# open files stay few. See docs/operations.md ("Backfills").
RANGE_BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=30)
# ``backfill_policy`` is marked beta in Dagster 1.13 (stable in use since 1.5): said once here,
# not as a warning on every load of the definitions.
warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)


def seed_of(day: str) -> int:
    """The seed of a day's generated file: its date as a number (2026-11-25: 20261125)."""
    return int(day.replace("-", ""))


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


# The tags Dagster puts on a run of a range of partitions (a backfill's run of several days).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def days_of_run(tags: dict[str, str]) -> list[str]:
    """The days a run writes, from its tags: one day, a range of days (in order), or none.
    A range that is not one of the partitions' raises ValueError saying which days are."""
    if tags.get(PARTITION_TAG):
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not (start and end):
        return []
    keys = daily_partitions.get_partition_keys()
    if start not in keys or end not in keys or end < start:
        raise ValueError(
            f"the run's days {start}...{end} are not a range of this location's days: from "
            f"{keys[0]} ({START_DATE_VARIABLE}) to {keys[-1]} (today, UTC), first day first"
        )
    return keys[keys.index(start) : keys.index(end) + 1]


def described_days(days: list[str]) -> str:
    """Days as a reader wants them: "2026-01-01", "2026-01-01 and 2026-01-02", or the
    first and last of a longer list with their count."""
    if len(days) <= 2:
        return " and ".join(days) or "no day"
    return f"{len(days)} days, {days[0]} to {days[-1]}"


def committed_and_untouched(committed: list[str], untouched: list[str]) -> str:
    """What a range's failure left: "2026-01-01 and 2026-01-02 committed, each whole;
    2026-01-03 kept the set it had"."""
    if not committed:
        return f"none of its {len(untouched)} days was committed: each kept the set it had"
    if not untouched:
        return f"every one of its {len(committed)} days was committed, each whole"
    kept = "kept the set it had" if len(untouched) == 1 else "kept the sets they had"
    return f"{described_days(committed)} committed, each whole; {described_days(untouched)} {kept}"
