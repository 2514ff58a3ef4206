"""Every strategy side by side: the parallelism_benchmark asset and the job that runs it on
request (it is in no schedule: it takes minutes and every CPU)."""

import dagster as dg
from pydantic import Field

from data_pipeline.defs.jobs import numbers_executor
from data_pipeline.defs.resources import ProcessPoolResource

BENCHMARK_GROUP = "benchmarks"


class ParallelismBenchmarkConfig(dg.Config):
    """How much work the benchmark times."""

    values: int = Field(
        default=400_000,
        ge=1_000,
        le=20_000_000,
        description=(
            "Values to transform (drawn like the default input) and lines to clean. At "
            "4,000,000 the compiled strategies show what a pool adds to them."
        ),
    )
    repeats: int = Field(
        default=3,
        ge=3,
        le=20,
        description="Timed runs of every strategy, alternating; medians with min and max.",
    )
    python_sample_values: int = Field(
        default=200_000,
        ge=1_000,
        description=(
            "Above this many values, the plain-Python strategies run on a sample of this "
            "size and are compared per value (serial Python takes ~20 µs a value)."
        ),
    )


@dg.asset(group_name=BENCHMARK_GROUP, kinds={"python"})
def parallelism_benchmark(
    context: dg.AssetExecutionContext,
    config: ParallelismBenchmarkConfig,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Which way of running the transform and the cleaning is fastest here? Times serial
    Python, the project's pool, multiprocessing.Pool, ProcessPoolExecutor, a one-item-at-a-
    time queue, threads, numpy and numba alone and on the pool (results pickled or through
    shared memory), and joblib when installed, on the same input; checks every output
    against serial Python and records the table, a verdict and the headline speedups."""
    # Imported here: it imports numba (about half a second), which every other step process
    # of every run would otherwise pay when it loads the definitions.
    from data_pipeline.measure.strategies import compare_strategies

    context.log.info(process_pool.describe_plan())
    report = compare_strategies(
        values=config.values,
        repeats=config.repeats,
        workers=process_pool.settings().workers,
        chunk_values=process_pool.transform_chunk_values,
        sample_python_above=config.python_sample_values,
        python_sample_values=config.python_sample_values,
        cleaning_chunk_bytes=process_pool.cleaning_chunk_bytes,
        start_method=process_pool.start_method,
    )
    verdict = " ".join(report.verdict())
    context.log.info(verdict)
    figures = {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in report.headline_figures().items()
    }
    return dg.MaterializeResult(
        metadata={"verdict": verdict, "summary": dg.MetadataValue.md(report.markdown()), **figures}
    )


benchmark_job = dg.define_asset_job(
    name="benchmark_job",
    selection=dg.AssetSelection.assets(parallelism_benchmark),
    executor_def=numbers_executor,
    description="Time every strategy side by side (minutes; run it on request, not daily).",
)
