"""Each accepted value with its square, digit sum, Collatz steps and prime factors, computed by
the chosen kernel in the step or on the pool."""

import time

import dagster as dg

from data_pipeline.defs.assets.cleaned_numbers import cleaned_numbers
from data_pipeline.defs.assets.pooled_step import (
    POOLED_DAY_STEP,
    DayOutcome,
    pool_sentence,
    pooled_step_start,
    step_cost_metadata,
    step_result,
)
from data_pipeline.defs.catalog import catalog, column_schema
from data_pipeline.defs.checks import TRANSFORM_CHECK, one_transformed_row_per_accepted_value
from data_pipeline.defs.day_files import writing
from data_pipeline.defs.partitions import RANGE_BACKFILL
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.stages.parquet_output import TRANSFORMED_SCHEMA
from data_pipeline.numbers.stages.transform import TransformJob, transform_files_to_parquet
from data_pipeline.numbers.storage import CLEANED_NUMBERS_FILE, TRANSFORMED_NUMBERS_FILE, digest_key

# transformed_numbers' metadata: the digest of the cleaned values it was computed from.
UPSTREAM_CLEANED_KEY = "upstream_cleaned_numbers_sha256"


@dg.asset(
    **catalog("transformed_numbers", TRANSFORMED_SCHEMA),
    kinds={"python", "parquet"},
    deps=[cleaned_numbers],
    check_specs=[TRANSFORM_CHECK],
    **POOLED_DAY_STEP,
    backfill_policy=RANGE_BACKFILL,
)
def transformed_numbers(
    context: dg.AssetExecutionContext,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Each accepted value with its square, digit sum, Collatz step count, smallest and
    largest prime factor and primality, computed by the chosen kernel (by default the fastest
    installed one; plain Python is the reference every kernel must match), in the step or on a
    process pool as `mode` decides. Written in input order to `transformed_numbers.parquet`, and
    verified by its blocking check before any commit."""
    chosen = pooled_step_start(context, process_pool)
    kernel = chosen.kernel
    outcomes = []
    with writing(context, data_directory) as days:
        sources = [files.input(CLEANED_NUMBERS_FILE, "cleaned_numbers") for files in days]
        jobs = [
            TransformJob(files.path_of(source), files.output(TRANSFORMED_NUMBERS_FILE))
            for files, source in zip(days, sources, strict=True)
        ]
        started = time.perf_counter()
        summaries = transform_files_to_parquet(
            jobs,
            process_pool.settings(),
            process_pool.chunk_values_for(kernel),
            context.log,
            kernel,
        )
        for files, source, job, summary in zip(days, sources, jobs, summaries, strict=True):
            files.record(
                TRANSFORMED_NUMBERS_FILE,
                summary.digests[digest_key(TRANSFORMED_NUMBERS_FILE)],
                summary.rows,
                {CLEANED_NUMBERS_FILE: source.sha256},
            )
            check = one_transformed_row_per_accepted_value(files)
            metadata = {
                "dagster/row_count": summary.rows,
                "path": dg.MetadataValue.path(str(job.transformed_path)),
                "rows": summary.rows,
                **summary.digests,
                UPSTREAM_CLEANED_KEY: source.sha256,
                **files.finish(check),
            }
            outcomes.append(DayOutcome(files.day, metadata, [check]))
        seconds = time.perf_counter() - started
    rows = sum(outcome.metadata["rows"] for outcome in outcomes)
    context.log.info(
        f"transformed {rows:,} values, {pool_sentence(summary.pool)} in {seconds:.2f} s"
    )
    return step_result(
        context,
        outcomes,
        {
            "dagster/column_schema": column_schema(TRANSFORMED_SCHEMA),
            **step_cost_metadata(context, chosen, summary.pool, seconds),
            **summary.run.metadata(seconds, dg.MetadataValue.md),
        },
    )
