"""What a team's own code location imports from data_pipeline: the process pool resource, the
CPU pool's name, the day partitions, the data directory, and reading a day's current set."""

from data_pipeline.defs import partitions as _partitions
from data_pipeline.defs.resources import process_pool as _process_pool
from data_pipeline.defs.resources.data_directory import (
    DataDirectoryResource,
    data_directory_resource,
)
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.output_set import current_file, current_set

__all__ = [
    "CPU_POOL",
    "DataDirectoryResource",
    "ProcessPoolResource",
    "current_file",
    "current_set",
    "daily_partitions",
    "data_directory_resource",
]

CPU_POOL: str = _process_pool.CPU_POOL
"""The Dagster concurrency pool of the steps that start a process pool: give it to your own
CPU-heavy asset (``@dg.asset(pool=CPU_POOL)``) and the instance's limit for it counts your
step with data_pipeline's, so pools of different runs do not share the CPUs."""

daily_partitions = _partitions.daily_partitions
"""The days of data_pipeline's assets, a ``dg.DailyPartitionsDefinition`` (UTC, from
DATA_PIPELINE_START_DATE up to today): an asset that reads a day's files takes the same
partitions."""
