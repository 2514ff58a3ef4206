"""A team's own code location, loaded beside data_pipeline's from workspace.yaml and never
installed as a package: one asset that reads the cleaned numbers with pandas and runs its own
CPU-heavy function per bucket on data_pipeline's process pool."""

import dagster as dg
import pandas as pd

from bucket_stats.statistics import bucket_statistics
from data_pipeline.api import (
    CPU_POOL,
    DataDirectoryResource,
    ProcessPoolResource,
    current_file,
    daily_partitions,
    data_directory_resource,
)


@dg.asset(
    deps=[dg.AssetKey("cleaned_numbers")],
    group_name="team_examples",
    kinds={"pandas"},
    partitions_def=daily_partitions,  # the same days as cleaned_numbers
    pool=CPU_POOL,  # one of the steps whose pools share the CPUs across runs
)
def last_digit_statistics(
    context: dg.AssetExecutionContext,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Count, mean, median and mean Collatz steps of the day's cleaned values, per last
    digit."""
    # Read through the day's manifest: the files of the last complete run, never half of one.
    day_directory = data_directory.directory(context.partition_key)
    cleaned = pd.read_parquet(current_file(day_directory, "cleaned_numbers.parquet"))
    buckets = [
        (int(digit), group.tolist())
        for digit, group in cleaned["value"].groupby(cleaned["value"].abs() % 10)
    ]
    run = process_pool.map(
        context,
        bucket_statistics,
        buckets,
        describe=lambda bucket: f"the bucket of last digit {bucket[0]}",
        size_of=lambda bucket: len(bucket[1]),
        count_items=lambda statistics: statistics["values"],
        unit="values",
    )
    table = pd.DataFrame(list(run))  # results in the order of `buckets`
    insight = run.metadata()  # the pool's insight, as metadata
    return dg.MaterializeResult(
        metadata={"statistics": dg.MetadataValue.md(table.to_markdown(index=False)), **insight}
    )


defs = dg.Definitions(
    assets=[last_digit_statistics],
    jobs=[
        dg.define_asset_job(
            "last_digit_statistics_job",
            selection=[last_digit_statistics],
            executor_def=dg.multiprocess_executor,
        )
    ],
    resources={
        "data_directory": data_directory_resource(),
        "process_pool": ProcessPoolResource(),
    },
)
