"""When numbers_job runs on its own whenever a day's export lands (the Dagster daemon must be
running): the sensor watching the landing directory."""

import datetime
import json
from pathlib import Path

import dagster as dg

from data_pipeline.defs.jobs import numbers_job
from data_pipeline.defs.partitions import daily_partitions
from data_pipeline.defs.resources.data_directory import DataDirectoryResource

# A landing file modified less than this long ago may still be being written: it waits for
# the next evaluation (move finished files in with a rename to skip the wait).
SETTLE_SECONDS = 2.0


@dg.sensor(
    job=numbers_job,
    minimum_interval_seconds=30,
    description=(
        "Watches the landing directory: a new or changed YYYY-MM-DD.txt requests a run of "
        "numbers_job for that day."
    ),
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, data_directory: DataDirectoryResource
) -> dg.SensorResult | dg.SkipReason:
    """One run per new or changed file (by size and modification time, kept in the cursor
    and in the run key, so a daemon restart requests nothing twice); files that name no day
    of the partitions are reported in the skip reason."""
    landing = data_directory.landing_directory()
    seen = json.loads(context.cursor) if context.cursor else {}
    if not landing.is_dir():
        return dg.SkipReason(f"{landing} does not exist yet: no export has landed")
    requests, not_days, unsettled = [], [], []
    for path in sorted(landing.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        version = _version(path)
        if seen.get(path.name) == version:
            continue
        day = path.stem if path.suffix == ".txt" else ""
        if not _is_day(day):
            not_days.append(path.name)
            seen[path.name] = version  # reported once, not every 30 s
            continue
        if _modified_seconds_ago(path) < SETTLE_SECONDS:
            unsettled.append(path.name)
            continue
        requests.append(dg.RunRequest(run_key=f"{path.name}@{version}", partition_key=day))
        seen[path.name] = version
    cursor = json.dumps(seen, sort_keys=True)
    if not_days:
        context.log.warning(_not_days_sentence(not_days))
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    reasons = [_not_days_sentence(not_days)] if not_days else []
    if unsettled:
        reasons.append(f"still being written, looked at next time: {', '.join(unsettled)}")
    reason = "; ".join(reasons) or f"no new or changed export in {landing}"
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)


def _version(path: Path) -> str:
    status = path.stat()
    return f"{status.st_size}-{status.st_mtime_ns}"


def _modified_seconds_ago(path: Path) -> float:
    return datetime.datetime.now().timestamp() - path.stat().st_mtime


def _is_day(name: str) -> bool:
    """Whether ``name`` is a day of the partitions (from the start date up to today)."""
    try:
        datetime.date.fromisoformat(name)
    except ValueError:
        return False
    return daily_partitions.has_partition_key(name)


def _not_days_sentence(names: list[str]) -> str:
    first, last = (
        daily_partitions.get_first_partition_key(),
        daily_partitions.get_last_partition_key(),
    )
    return (
        f"ignored {', '.join(names)}: not named YYYY-MM-DD.txt for a day from {first} to "
        f"{last} (the partitions' range; DATA_PIPELINE_START_DATE moves its start)"
    )
