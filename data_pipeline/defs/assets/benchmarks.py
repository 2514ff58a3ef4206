"""The benchmark assets, run on request by benchmark_job: every strategy side by side
(parallelism_benchmark), and when the pool pays (parallelism_sweep)."""

import tempfile
from pathlib import Path

import dagster as dg

from data_pipeline.defs.catalog import BENCHMARK_GROUP
from data_pipeline.defs.configs import ParallelismBenchmarkConfig, ParallelismSweepConfig
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import CPU_POOL, ProcessPoolResource
from data_pipeline.numbers.stages.chunk_sizes import DEFAULT_TRANSFORM_CHUNK_VALUES
from data_pipeline.numbers.storage import atomic_output

SCALING_CHART_FILE = "scaling_chart.png"


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
    from data_pipeline.measure.strategies.compare import compare_strategies

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
    from data_pipeline.measure.sweeps.chart import markdown_image
    from data_pipeline.measure.sweeps.sweep import sweep_all
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
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    )
    runs = [record.dagster_run for record in records]
    return [f"{run.job_name} {run.run_id[:8]}" for run in runs if run.run_id != context.run.run_id]
