"""Did the process pool pay off for a day? Cleaning and the transform timed serially and on
the pool, with the outputs compared and the verdict as metadata."""

import dataclasses
import os

import dagster as dg

from data_pipeline.defs.assets.numbers_file import numbers_file
from data_pipeline.defs.assets.pooled_step import (
    POOLED_DAY_STEP,
    kernel_metadata,
    pooled_step_start,
)
from data_pipeline.defs.assets.transformed_numbers import transformed_numbers
from data_pipeline.defs.catalog import catalog
from data_pipeline.defs.configs import ParallelismReportConfig
from data_pipeline.defs.day_files import writing
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.measure.comparison import compare_serial_and_parallel, save_outputs
from data_pipeline.measure.report import (
    COMPARISON_COLUMNS,
    comparison_rows,
    cpu_wait_share,
    headline,
    markdown_table,
    verdict,
)
from data_pipeline.numbers.storage import NUMBERS_FILE, REPORT_OUTPUTS_DIRECTORY, pinned
from data_pipeline.parallel.insight import rounded

_STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


@dg.asset(
    **catalog("parallelism_report"),
    kinds={"python", "parquet"},
    # Depending on transformed_numbers makes this run after both pooled steps, so its
    # timings are not shared with another pool of the same run.
    deps=[numbers_file, transformed_numbers],
    **POOLED_DAY_STEP,
)
def parallelism_report(
    context: dg.AssetExecutionContext,
    config: ParallelismReportConfig,
    data_directory: DataDirectoryResource,
    process_pool: ProcessPoolResource,
) -> dg.MaterializeResult:
    """Did the process pool pay off? Times cleaning and the transform of numbers.txt serially
    (same functions, one process) and on the pool, several times each in alternating order,
    fails if any run's output differs in a value or in order, and records median timings
    with their spread, speedup, efficiency and where the parallel time went. Both runs'
    outputs are kept in `parallelism_report/` for the check to compare."""
    chosen = pooled_step_start(context, process_pool)
    kernel = chosen.kernel
    other_steps = _other_steps_running(context)
    load_before = os.getloadavg()[0]
    with writing(context, data_directory) as (files,):  # one day: no range policy
        source = files.input(NUMBERS_FILE, "numbers_file")
        directory = files.directory
        with pinned(files.path_of(source), beside=directory) as snapshot:
            comparison = compare_serial_and_parallel(
                snapshot,
                # A pool restarted mid-way would make the timings meaningless: fail instead, and let
                # the step's retry policy run the whole comparison again.
                dataclasses.replace(process_pool.settings(), restarts_on_worker_death=0),
                process_pool.chunk_bytes(),
                process_pool.chunk_values_for(kernel),
                config.repeats,
                context.log,
                kernel,
            )
        save_outputs(comparison, directory / REPORT_OUTPUTS_DIRECTORY)
    table = markdown_table(comparison)
    context.log.info(verdict(comparison))
    details: dict[str, object] = {
        **kernel_metadata(chosen),
        "backend": process_pool.backend,
        "start_method": (
            process_pool.start_method if process_pool.backend == "local" else process_pool.backend
        ),
        "repeats": comparison.repeats,
        "workers": comparison.workers,
        "cpus_available": comparison.cpus_available,
        "items": comparison.cleaning.items,
        "chunks": comparison.cleaning.chunks + comparison.transform.chunks,
        "pool_start_seconds": comparison.total("startup_seconds"),
        "compute_seconds": comparison.total("compute_seconds"),
        "worker_idle_seconds": comparison.total("idle_seconds"),
        "shutdown_seconds": comparison.total("shutdown_seconds"),
        "collect_seconds": comparison.total("collect_seconds"),
        "load_average_1m_before": load_before,
        "other_steps_running": ", ".join(other_steps) or "none",
        "rows_compared": sum(stage.rows_compared for stage in comparison.stages),
        "input_sha256": source.sha256,
    }
    for stage in comparison.stages:
        details |= {
            f"{stage.name}_serial_seconds": stage.serial_seconds,
            f"{stage.name}_serial_seconds_min": stage.serial.seconds.minimum,
            f"{stage.name}_serial_seconds_max": stage.serial.seconds.maximum,
            f"{stage.name}_parallel_seconds": stage.parallel_seconds,
            f"{stage.name}_parallel_seconds_min": stage.parallel.seconds.minimum,
            f"{stage.name}_parallel_seconds_max": stage.parallel.seconds.maximum,
            f"{stage.name}_speedup": stage.speedup,
            f"{stage.name}_cpu_contention": stage.cpu_contention,
            f"{stage.name}_cpu_wait_share": stage.cpu_wait_share,
        }
    # In the order a person reads them: the answer, the table, the reasoning. Only the few
    # figures worth a chart across runs are numbers (the UI plots every number); the
    # constants and secondary figures are in `details`, which it does not plot.
    metadata: dict[str, object] = {
        "speedup": comparison.speedup,
        "headline": headline(comparison),
        "comparison": dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in comparison_rows(comparison)],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn(name, kind, description=description)
                    for name, kind, description in COMPARISON_COLUMNS
                ]
            ),
        ),
        "verdict": verdict(comparison),
        "summary": dg.MetadataValue.md(table),
        "serial_seconds": comparison.serial_seconds,
        "parallel_seconds": comparison.parallel_seconds,
        "efficiency": comparison.efficiency,
        "cpu_wait_share": cpu_wait_share(comparison),
        "details": dg.MetadataValue.json(rounded(details)),
        "outputs_path": dg.MetadataValue.path(str(directory / REPORT_OUTPUTS_DIRECTORY)),
    }
    return dg.MaterializeResult(metadata=rounded(metadata))


def _other_steps_running(context: dg.AssetExecutionContext) -> list[str]:
    """Steps of this run that had started and not finished when this step began (an asset's
    step is named for its op)."""
    started, finished = set(), set()
    records = context.instance.get_records_for_run(context.run.run_id, of_type=_STEP_EVENTS)
    for record in records.records:
        event = record.event_log_entry.dagster_event
        (started if event.event_type == dg.DagsterEventType.STEP_START else finished).add(
            event.step_key
        )
    return sorted(started - finished - {context.op_def.name})
