"""Every strategy side by side (parallelism_benchmark), when the pool pays
(parallelism_sweep), and the job that runs them on request: it is in no schedule, it takes
minutes and every CPU, and its executor runs one step at a time."""

import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator

from data_pipeline.defs.assets import RUN_CONFIG_MODELS
from data_pipeline.defs.jobs import numbers_executor
from data_pipeline.defs.resources import CPU_POOL, DataDirectoryResource, ProcessPoolResource
from data_pipeline.numbers.pipeline import DEFAULT_TRANSFORM_CHUNK_VALUES
from data_pipeline.numbers.storage import atomic_output

SCALING_CHART_FILE = "scaling_chart.png"

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


@dg.asset(group_name=BENCHMARK_GROUP, kinds={"python"}, pool=CPU_POOL)
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
        chunk_values=process_pool.transform_chunk_values or DEFAULT_TRANSFORM_CHUNK_VALUES,
        sample_python_above=config.python_sample_values,
        python_sample_values=config.python_sample_values,
        cleaning_chunk_bytes=process_pool.chunk_bytes(),
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


class ParallelismSweepConfig(dg.Config):
    """Which sizes the sweep times, and how often."""

    sizes: list[int] = Field(
        default=[10, 100, 1_000, 10_000, 100_000, 400_000, 1_000_000, 4_000_000],
        min_length=2,
        description=(
            "Input sizes (lines to clean, values to transform), ascending, log-spaced. The "
            "whole sweep takes about 10 minutes on 2 CPUs with the default."
        ),
    )
    repeats: int = Field(default=3, ge=3, le=20, description="Timed runs per size and mode.")
    python_transform_max_size: int = Field(
        default=400_000,
        ge=10,
        description=(
            "The python kernel's transform stops at this size (~25 µs a value: 4,000,000 "
            "values would take 100 s a run, far past where the pool starts to pay)."
        ),
    )

    @field_validator("sizes")
    @classmethod
    def _ascending(cls, sizes: list[int]) -> list[int]:
        if sizes != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError(f"sizes={sizes} must be positive and strictly ascending")
        return sizes


@dg.asset(group_name=BENCHMARK_GROUP, kinds={"python"}, pool=CPU_POOL)
def parallelism_sweep(
    context: dg.AssetExecutionContext,
    config: ParallelismSweepConfig,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """When does the pool pay? Times cleaning and the transform, with the python kernel and
    the fastest one, serially, on the pool and with mode auto at every size, and on 1 to 2x
    the CPUs workers; reports the crossover sizes, Amdahl's serial fraction, how close auto
    came to the better choice, and a chart (also saved as scaling_chart.png)."""
    # Imported here, as the strategies: numba and matplotlib are not every step's to pay.
    from data_pipeline.measure.chart import markdown_image
    from data_pipeline.measure.sweeps import sweep_all
    from data_pipeline.numbers.kernel_choice import PYTHON, kernel_named

    context.log.info(process_pool.describe_plan())
    others = _other_runs_in_progress(context)
    if others:
        context.log.warning(
            f"other runs are in progress ({', '.join(others)}): they share the CPUs, so these "
            "timings say less than usual"
        )
    kernels = list(dict.fromkeys([PYTHON, kernel_named("auto")]))
    directory = data_directory.directory()
    with tempfile.TemporaryDirectory(prefix=".sweep-", dir=directory) as inputs:
        report = sweep_all(
            kernels,
            Path(inputs),
            process_pool.settings().workers,
            config.repeats,
            config.sizes,
            config.python_transform_max_size,
            process_pool.start_method,
            progress=context.log.info,
        )
    png = report.chart_png()
    chart_path = directory / SCALING_CHART_FILE
    with atomic_output(chart_path) as temporary:
        temporary.write_bytes(png)
    verdict = report.verdict()
    context.log.info(verdict)
    chart = markdown_image(png, "Speedup by size and by workers")
    return dg.MaterializeResult(
        metadata={
            "verdict": verdict,
            "chart": dg.MetadataValue.md(f"{chart}\n\n{report.markdown()}"),
            "chart_path": dg.MetadataValue.path(str(chart_path)),
            "other_runs_in_progress": ", ".join(others) or "none",
            **report.headline_figures(),
        }
    )


def _other_runs_in_progress(context: dg.AssetExecutionContext) -> list[str]:
    """Runs other than this one that are starting or started: they would share the CPUs."""
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    )
    return [f"{run.job_name} {run.run_id[:8]}" for run in runs if run.run_id != context.run.run_id]


benchmark_job = dg.define_asset_job(
    name="benchmark_job",
    selection=dg.AssetSelection.assets(parallelism_benchmark, parallelism_sweep),
    executor_def=numbers_executor,
    description=(
        "Time every strategy side by side, and sweep sizes and workers to find where the "
        "pool pays (minutes each; run it on request, not daily)."
    ),
)

# Checked by the executor before a run starts, like the numbers assets' config.
RUN_CONFIG_MODELS.update(
    parallelism_benchmark=ParallelismBenchmarkConfig, parallelism_sweep=ParallelismSweepConfig
)
